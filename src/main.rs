fn main() {
    eprintln!("oqmgr: the daemon loop is not built yet (see README.md)");
    std::process::exit(1);
}
