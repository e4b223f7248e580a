//! `kubectl_complete-dbcheck`: kubectl 1.26+ runs it to complete `kubectl dbcheck <TAB>`; the
//! candidates come from `kubectl-dbcheck __complete` (see `kubectl_db::complete`).

fn main() {
    kubectl_db::complete::helper("kubectl-dbcheck")
}
