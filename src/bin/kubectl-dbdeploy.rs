//! `kubectl dbdeploy`: deploy PostgreSQL, MySQL or MariaDB as a StatefulSet.
//! The command line is `kubectl_db::app::dbdeploy`: a binary this thin keeps the release build
//! from compiling the flows once per plugin.

fn main() {
    kubectl_db::app::dbdeploy::main()
}
