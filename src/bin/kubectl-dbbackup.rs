//! `kubectl dbbackup`: streamed, verified dumps; their verification; restores; CSI snapshots.
//! The command line is `kubectl_db::app::dbbackup`: a binary this thin keeps the release build
//! from compiling the flows once per plugin.

fn main() {
    kubectl_db::app::dbbackup::main()
}
