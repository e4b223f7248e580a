//! The namespace (or cluster) summary's reads: each kind is listed once, for the namespace
//! or with `-A` for the cluster, and joined in memory per database ([`Listing::facts`]),
//! so the summary's API cost does not grow with the number of databases; only the
//! commands run in each pod (and a restarted container's log) do.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DynamicObject, ListParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::collect::{self, claim_names, target_spec};
use super::facts::{Facts, InsideFacts, RefKind};
use super::podspec::references;
use super::verdict::Check;
use super::{backups, snapshots};
use crate::backup::schedule::{self, managed_selector};
use crate::backup::schedule_run::{self, JobRun};
use crate::backup::snapshot::{MANAGED_BY, check_api, resource};
use crate::backup::snapshot_list::{SnapshotInfo, info};
use crate::client::Kube;
use crate::error::{Error, Result};
use crate::render::cronjob::DATABASE_LABEL;
use crate::target::{Target, statefulset_engine};
use crate::wait::within;

/// `(namespace, name) -> key names` of every Secret or ConfigMap, or why they could not be
/// listed.
pub type KeysByName = std::result::Result<BTreeMap<(String, String), BTreeSet<String>>, String>;

/// Everything the summary reads from the API server, once.
#[derive(Debug, Clone)]
pub struct Listing {
    pub statefulsets: Vec<StatefulSet>,
    pub pods: Vec<Pod>,
    pub claims: Vec<PersistentVolumeClaim>,
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
    pub events: std::result::Result<Vec<Event>, String>,
    /// Key names only: values are dropped as the list arrives.
    pub secrets: KeysByName,
    pub config_maps: KeysByName,
    pub classes: std::result::Result<Vec<StorageClass>, String>,
    pub volumes: std::result::Result<Vec<PersistentVolume>, String>,
    /// PodMetrics objects, or why there are none (no metrics-server).
    pub metrics: std::result::Result<Vec<DynamicObject>, String>,
    /// Snapshots taken by this tool, or the `snapshot.newest` check that says why not.
    pub snapshots: std::result::Result<Vec<SnapshotInfo>, Check>,
    /// `dbbackup schedule`'s CronJobs and their Jobs, or why they could not be listed.
    pub schedules: std::result::Result<(Vec<CronJob>, Vec<Job>), String>,
}

/// Where a listing reads: one namespace or all.
#[derive(Clone, Copy)]
struct Scope<'a> {
    kube: &'a Kube,
    all: bool,
    budget: Duration,
}

impl Scope<'_> {
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        if self.all {
            self.kube.api_all()
        } else {
            self.kube.api()
        }
    }

    fn dynamic(&self, resource: &kube::api::ApiResource) -> Api<DynamicObject> {
        if self.all {
            Api::all_with(self.kube.client.clone(), resource)
        } else {
            Api::namespaced_with(self.kube.client.clone(), &self.kube.namespace, resource)
        }
    }

    fn place(&self) -> String {
        if self.all {
            "all namespaces".into()
        } else {
            self.kube.namespace.clone()
        }
    }

    /// Every object of one kind in the scope, within the budget.
    async fn list<K>(&self, api: Api<K>, plural: &str, params: ListParams) -> Result<Vec<K>>
    where
        K: Clone + DeserializeOwned + Debug,
    {
        let place = self.place();
        within(
            self.budget,
            format!("the API server to return {plural} in {place}"),
            async {
                api.list(&params)
                    .await
                    .map_err(Error::api(format!("list {plural} in {place}")))
            },
        )
        .await
        .map(|l| l.items)
    }

    async fn list_all<K>(&self, plural: &str) -> Result<Vec<K>>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        <K as Resource>::DynamicType: Default,
    {
        self.list(self.api(), plural, ListParams::default()).await
    }
}

impl Listing {
    /// Lists every kind concurrently. StatefulSets, pods, claims, Services and
    /// EndpointSlices are needed (an error ends the summary); the rest are optional, and
    /// the checks that need one say why it could not be read.
    pub async fn read(kube: &Kube, all: bool, budget: Duration) -> Result<Listing> {
        let scope = Scope { kube, all, budget };
        let text = |e: Error| collect::error_text(&e);
        let secrets = async {
            let list: Vec<Secret> = scope.list_all("Secrets").await.map_err(text)?;
            Ok(keys_by_name(list, collect::secret_keys))
        };
        let config_maps = async {
            let list: Vec<ConfigMap> = scope.list_all("ConfigMaps").await.map_err(text)?;
            Ok(keys_by_name(list, collect::config_map_keys))
        };
        let classes = async {
            let api: Api<StorageClass> = kube.api_all();
            let params = ListParams::default();
            scope
                .list(api, "StorageClasses", params)
                .await
                .map_err(text)
        };
        let volumes = async {
            let api: Api<PersistentVolume> = kube.api_all();
            let params = ListParams::default();
            scope
                .list(api, "PersistentVolumes", params)
                .await
                .map_err(text)
        };
        let metrics = async {
            let api = scope.dynamic(&collect::pod_metrics_resource());
            match tokio::time::timeout(budget, api.list(&ListParams::default())).await {
                Err(_) => Err("the metrics API did not answer in time".to_string()),
                Ok(Err(err)) => Err(collect::metrics_error(err)),
                Ok(Ok(list)) => Ok(list.items),
            }
        };
        let schedules = async {
            let params = |selector: String| ListParams::default().labels(&selector);
            let (cron_jobs, jobs) = tokio::join!(
                scope.list(scope.api(), "CronJobs", params(managed_selector(None))),
                scope.list(scope.api(), "Jobs", params(DATABASE_LABEL.to_string())),
            );
            Ok((cron_jobs.map_err(text)?, jobs.map_err(text)?))
        };
        let (statefulsets, pods, claims, services, slices, events) = tokio::join!(
            scope.list_all::<StatefulSet>("StatefulSets"),
            scope.list_all::<Pod>("pods"),
            scope.list_all::<PersistentVolumeClaim>("PVCs"),
            scope.list_all::<Service>("Services"),
            scope.list_all::<EndpointSlice>("EndpointSlices"),
            scope.list_all::<Event>("events"),
        );
        let (secrets, config_maps, classes, volumes, metrics, snapshots, schedules) = tokio::join!(
            secrets,
            config_maps,
            classes,
            volumes,
            metrics,
            read_snapshots(scope),
            schedules
        );
        Ok(Listing {
            statefulsets: statefulsets?,
            pods: pods?,
            claims: claims?,
            services: services?,
            slices: slices?,
            events: events.map_err(text),
            secrets,
            config_maps,
            classes,
            volumes,
            metrics,
            snapshots,
            schedules,
        })
    }

    /// Every StatefulSet that runs a database (dbdeploy's or hand-made), with its pod `-0`
    /// when it exists: what `kubectl dbcheck STATEFULSET` would resolve.
    pub fn databases(&self) -> Vec<Target> {
        let pods: BTreeMap<(String, String), &Pod> = self
            .pods
            .iter()
            .map(|p| ((p.namespace().unwrap_or_default(), p.name_any()), p))
            .collect();
        self.statefulsets
            .iter()
            .filter_map(|sts| {
                let (engine, container) = statefulset_engine(sts)?;
                let namespace = sts.namespace().unwrap_or_default();
                let pod_name = format!("{}-0", sts.name_any());
                let pod = pods.get(&(namespace.clone(), pod_name.clone()));
                Some(Target {
                    pod: pod.map(|p| (*p).clone()),
                    namespace,
                    pod_name,
                    engine,
                    container,
                    statefulset: Some(sts.clone()),
                })
            })
            .collect()
    }

    /// The facts of one database from the lists; `previous_logs` and `inside` are the
    /// caller's to fill (they are read from the pod itself).
    pub fn facts(&self, target: &Target, now: Timestamp) -> Facts {
        let ns = target.namespace.as_str();
        let here = |object_ns: Option<String>| object_ns.as_deref() == Some(ns);
        let spec = target_spec(target);
        let claim_names = claim_names(target, spec.as_ref());
        let claims: Vec<(String, Option<PersistentVolumeClaim>)> = claim_names
            .iter()
            .map(|name| {
                let claim = self
                    .claims
                    .iter()
                    .find(|c| here(c.namespace()) && &c.name_any() == name);
                (name.clone(), claim.cloned())
            })
            .collect();
        let bound: BTreeSet<String> = claims
            .iter()
            .filter_map(|(_, c)| c.as_ref()?.spec.as_ref()?.volume_name.clone())
            .filter(|n| !n.is_empty())
            .collect();
        let (volumes, volume_errors) = match &self.volumes {
            Ok(all) => (
                all.iter()
                    .filter(|v| bound.contains(&v.name_any()))
                    .cloned()
                    .collect(),
                Vec::new(),
            ),
            Err(_) if bound.is_empty() => (Vec::new(), Vec::new()),
            Err(err) => (Vec::new(), vec![err.clone()]),
        };
        let services: Vec<Service> = self
            .services
            .iter()
            .filter(|s| here(s.namespace()))
            .cloned()
            .collect();
        let wanted: BTreeSet<(RefKind, String)> = spec
            .as_ref()
            .map(references)
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.kind, r.name))
            .collect();
        let objects = wanted
            .into_iter()
            .map(|(kind, name)| {
                let listed = match kind {
                    RefKind::Secret => &self.secrets,
                    RefKind::ConfigMap => &self.config_maps,
                };
                let keys = listed
                    .as_ref()
                    .map(|all| all.get(&(ns.to_string(), name.clone())).cloned())
                    .map_err(Clone::clone);
                ((kind, name), keys)
            })
            .collect();
        let events = self.events.as_ref().map_err(Clone::clone).map(|all| {
            let in_ns = all.iter().filter(|e| here(e.namespace()));
            collect::about_database(in_ns, target, &claim_names, &services)
        });
        let usage = self.metrics.as_ref().map_err(Clone::clone).and_then(|all| {
            all.iter()
                .find(|m| here(m.namespace()) && m.name_any() == target.pod_name)
                .map(collect::container_usage)
                .ok_or_else(|| "no metrics for the pod yet".to_string())
        });
        Facts {
            namespace: target.namespace.clone(),
            pod_name: target.pod_name.clone(),
            engine: target.engine,
            container: target.container.clone(),
            pod: target.pod.clone(),
            statefulset: target.statefulset.clone(),
            claims,
            storage_classes: self.classes.clone(),
            volumes,
            volume_errors,
            services,
            endpoint_slices: self
                .slices
                .iter()
                .filter(|s| here(s.namespace()))
                .cloned()
                .collect(),
            objects,
            events,
            previous_logs: None,
            usage,
            inside: InsideFacts::not_run("not run yet"),
            now,
        }
    }

    /// What could not be listed, with the API's reason (a refused permission names the
    /// verb and resource), for the summary: its lines show only failed and warned checks,
    /// not the skipped ones this leaves. Clusters without metrics-server or the snapshot
    /// API are not worth a line in every summary.
    pub fn not_read(&self) -> Vec<String> {
        let mut reasons: Vec<String> = [
            &self.events.as_ref().err(),
            &self.secrets.as_ref().err(),
            &self.config_maps.as_ref().err(),
            &self.classes.as_ref().err(),
            &self.volumes.as_ref().err(),
            &self.schedules.as_ref().err(),
            &self
                .metrics
                .as_ref()
                .err()
                .filter(|e| !e.starts_with("no metrics API")),
        ]
        .into_iter()
        .flatten()
        .map(|reason| reason.to_string())
        .collect();
        if let Err(check) = &self.snapshots
            && check.evidence.starts_with("could not read")
        {
            reasons.push(check.evidence.clone());
        }
        reasons
    }

    /// `snapshot.newest` of the database `name` in `namespace`.
    pub fn snapshot_check(&self, namespace: &str, name: &str) -> Check {
        match &self.snapshots {
            Ok(all) => snapshots::judge(
                name,
                Ok(all
                    .iter()
                    .filter(|s| s.namespace == namespace && s.database.as_deref() == Some(name))
                    .cloned()
                    .collect()),
            ),
            Err(check) => check.clone(),
        }
    }
}

impl Listing {
    /// `backup.schedule` and `backup.recent` of one database from the listed CronJobs and
    /// Jobs (the same verdicts `dbcheck TARGET` reads for itself).
    pub fn backup_checks(
        &self,
        namespace: &str,
        name: &str,
        max_age: Duration,
        now: Timestamp,
    ) -> Vec<Check> {
        let found = match &self.schedules {
            Ok((cron_jobs, jobs)) => {
                let ours = |meta: &kube::api::ObjectMeta| {
                    meta.namespace.as_deref() == Some(namespace)
                        && meta.labels.as_ref().and_then(|l| l.get(DATABASE_LABEL))
                            == Some(&name.to_string())
                };
                let pods: Vec<Pod> = self
                    .pods
                    .iter()
                    .filter(|p| ours(&p.metadata))
                    .cloned()
                    .collect();
                let mut runs: Vec<(Option<Timestamp>, JobRun)> = jobs
                    .iter()
                    .filter(|j| ours(&j.metadata))
                    .map(|j| {
                        let created = j.metadata.creation_timestamp.as_ref().map(|t| t.0);
                        (created, schedule_run::job_run(j, &pods, now))
                    })
                    .collect();
                runs.sort_by_key(|r| std::cmp::Reverse(r.0));
                let runs = runs.into_iter().map(|(_, r)| r).collect();
                Ok(cron_jobs
                    .iter()
                    .filter(|c| ours(&c.metadata))
                    .map(schedule::info)
                    .min_by(|a, b| a.cron_job.cmp(&b.cron_job))
                    .map(|info| (info, runs)))
            }
            Err(reason) => Err(Error::Failed(reason.clone())),
        };
        backups::judge(name, found, max_age, now)
    }
}

fn keys_by_name<K: Resource>(
    list: Vec<K>,
    keys: impl Fn(K) -> BTreeSet<String>,
) -> BTreeMap<(String, String), BTreeSet<String>> {
    list.into_iter()
        .map(|o| ((o.namespace().unwrap_or_default(), o.name_any()), keys(o)))
        .collect()
}

/// The snapshots this tool took, newest first: one discovery and one list. Where they
/// cannot be read, the check that says so for every database.
async fn read_snapshots(scope: Scope<'_>) -> std::result::Result<Vec<SnapshotInfo>, Check> {
    let read = async {
        check_api(scope.kube).await?;
        let params =
            ListParams::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
        scope
            .list(
                scope.dynamic(&resource("VolumeSnapshot")),
                "VolumeSnapshots",
                params,
            )
            .await
    };
    let found = match tokio::time::timeout(scope.budget, read).await {
        Ok(found) => found,
        Err(_) => Err(Error::Timeout {
            what: "the API server to list VolumeSnapshots".into(),
            after: scope.budget,
        }),
    };
    match found {
        Ok(objects) => {
            let now = Timestamp::now();
            let mut infos: Vec<SnapshotInfo> = objects.iter().map(|o| info(o, now)).collect();
            infos.sort_by(|a, b| a.age_seconds.cmp(&b.age_seconds).then(a.name.cmp(&b.name)));
            Ok(infos)
        }
        // The judgement of an unreadable list does not depend on the database.
        Err(err) => Err(snapshots::judge("", Err(err))),
    }
}

#[cfg(test)]
#[path = "listing_tests.rs"]
mod tests;
