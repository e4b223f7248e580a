//! `kubectl_complete-dbdeploy`: kubectl 1.26+ runs it to complete `kubectl dbdeploy <TAB>`; the
//! candidates come from `kubectl-dbdeploy __complete` (see `kubectl_db::complete`).

fn main() {
    kubectl_db::complete::helper("kubectl-dbdeploy")
}
