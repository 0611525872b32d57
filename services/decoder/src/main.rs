use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = oneword_decoder::Config::parse();
    oneword_runtime::serve::main(config.listen, |listener, shutdown| {
        oneword_decoder::run(config, listener, shutdown)
    })
    .await
}
