//! `kubectl dbcheck`: health report and automatic diagnosis of a database.
//! The command line is `kubectl_db::app::dbcheck`: a binary this thin keeps the release build
//! from compiling the flows once per plugin.

fn main() {
    kubectl_db::app::dbcheck::main()
}
