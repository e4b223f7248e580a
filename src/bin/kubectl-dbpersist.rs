//! `kubectl dbpersist`: prove a database's data survives the death of its pod.
//! The command line is `kubectl_db::app::dbpersist`: a binary this thin keeps the release build
//! from compiling the flows once per plugin.

fn main() {
    kubectl_db::app::dbpersist::main()
}
