//! `kubectl_complete-dbpersist`: kubectl 1.26+ runs it to complete `kubectl dbpersist <TAB>`; the
//! candidates come from `kubectl-dbpersist __complete` (see `kubectl_db::complete`).

fn main() {
    kubectl_db::complete::helper("kubectl-dbpersist")
}
