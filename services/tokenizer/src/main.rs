use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = oneword_tokenizer::Config::parse();
    oneword_runtime::serve::main(config.listen, |listener, shutdown| {
        oneword_tokenizer::run(config, listener, shutdown)
    })
    .await
}
