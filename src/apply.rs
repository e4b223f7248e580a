//! Server-side apply with field manager `kubectl-dbdeploy`, and the created / configured /
//! unchanged accounting users see in the summary.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The field manager recorded on every field dbdeploy owns: the managed-by value, so
/// `kubectl get -o yaml --show-managed-fields` and the labels name the same tool.
pub const FIELD_MANAGER: &str = crate::render::MANAGED_BY;

/// What an apply did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It did not exist.
    Created,
    /// It existed and changed.
    Configured,
    /// It existed and nothing changed (same resourceVersion).
    Unchanged,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        })
    }
}

/// One applied object, for the summary and `-o json`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Applied {
    pub kind: String,
    pub name: String,
    pub outcome: Outcome,
}

/// How to apply: dry run on the server, and whether to take over conflicting fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    pub server_dry_run: bool,
    pub force_conflicts: bool,
}

impl ApplyOptions {
    fn params(self) -> PatchParams {
        let mut params = PatchParams::apply(FIELD_MANAGER);
        if self.force_conflicts {
            params = params.force();
        }
        if self.server_dry_run {
            params = params.dry_run();
        }
        params
    }
}

/// Applies `object` and reports what changed. The object must carry its name.
pub async fn apply<K>(api: &Api<K>, object: &K, options: ApplyOptions) -> Result<(K, Applied)>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
    <K as Resource>::DynamicType: Default,
{
    let kind = K::kind(&Default::default()).to_string();
    let name = object.name_any();
    let before = api
        .get_metadata_opt(&name)
        .await
        .map_err(Error::api(format!("read {kind} {name}")))?;
    let after = api
        .patch(&name, &options.params(), &Patch::Apply(object))
        .await
        .map_err(Error::api(format!("apply {kind} {name}")))?;
    let outcome = match before {
        None => Outcome::Created,
        Some(before) if before.resource_version() == after.resource_version() => Outcome::Unchanged,
        Some(_) => Outcome::Configured,
    };
    tracing::debug!(%kind, %name, %outcome, "applied");
    Ok((
        after,
        Applied {
            kind,
            name,
            outcome,
        },
    ))
}
