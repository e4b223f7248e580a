//! `kubectl_complete-dbbackup`: kubectl 1.26+ runs it to complete `kubectl dbbackup <TAB>`; the
//! candidates come from `kubectl-dbbackup __complete` (see `kubectl_db::complete`).

fn main() {
    kubectl_db::complete::helper("kubectl-dbbackup")
}
