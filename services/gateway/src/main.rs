use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    oneword_runtime::telemetry::init();
    let config = oneword_gateway::Config::parse();
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    oneword_gateway::run(config, listener, oneword_runtime::shutdown_signal()).await
}
