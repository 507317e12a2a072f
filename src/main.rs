fn main() -> std::process::ExitCode {
    ringseed::cli::main()
}
