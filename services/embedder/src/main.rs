use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = oneword_embedder::Config::parse();
    oneword_runtime::serve::main(config.listen, |listener, shutdown| {
        oneword_embedder::run(config, listener, shutdown)
    })
    .await
}
