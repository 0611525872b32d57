use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    oneword_runtime::telemetry::init();
    let config = oneword_embedder::Config::parse();
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    oneword_embedder::run(config, listener, oneword_runtime::shutdown_signal()).await
}
