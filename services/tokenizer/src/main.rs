use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = oneword_tokenizer::Config::parse();
    oneword_runtime::telemetry::init();
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    oneword_tokenizer::run(config, listener, oneword_runtime::shutdown_signal()).await
}
