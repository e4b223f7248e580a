// provisioner is the dynamic volume provisioner of the local test cluster, doing what
// kind's local-path-provisioner does for StorageClass `standard`, as a host process:
//
//   - a PVC of a StorageClass whose provisioner is ours, once the scheduler has picked a
//     node (WaitForFirstConsumer: annotation volume.kubernetes.io/selected-node), gets a
//     directory <root>/<namespace>_<claim>_<pv> with mode 0777 (hostPath volumes ignore
//     fsGroup, so any pod uid must be able to write) and a hostPath PV pre-bound to it;
//   - a PV of ours that is Released with reclaim policy Delete has its directory removed
//     and is deleted.
//
// Usage: provisioner --kubeconfig FILE --root DIR [--name kubectl-db.local/hostpath]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	annSelectedNode  = "volume.kubernetes.io/selected-node"
	annProvisionedBy = "pv.kubernetes.io/provisioned-by"
	annPath          = "kubectl-db.local/path"
)

type provisioner struct {
	name   string
	root   string
	client kubernetes.Interface
	sc     cache.Indexer
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file")
	root := flag.String("root", "", "directory under which volumes are created")
	name := flag.String("name", "kubectl-db.local/hostpath", "provisioner name (StorageClass .provisioner)")
	flag.Parse()
	if *kubeconfig == "" || *root == "" {
		log.Fatal("--kubeconfig and --root are required")
	}
	absRoot, err := filepath.Abs(*root)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.MkdirAll(absRoot, 0o755); err != nil {
		log.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatal(err)
	}
	client := kubernetes.NewForConfigOrDie(cfg)

	factory := informers.NewSharedInformerFactory(client, 30*time.Second)
	pvcs := factory.Core().V1().PersistentVolumeClaims().Informer()
	pvs := factory.Core().V1().PersistentVolumes().Informer()
	scs := factory.Storage().V1().StorageClasses().Informer()
	p := &provisioner{name: *name, root: absRoot, client: client, sc: scs.GetIndexer()}

	pvcs.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o interface{}) { p.claim(o) },
		UpdateFunc: func(_, o interface{}) { p.claim(o) },
	})
	pvs.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o interface{}) { p.volume(o) },
		UpdateFunc: func(_, o interface{}) { p.volume(o) },
	})
	stop := make(chan struct{})
	factory.Start(stop)
	factory.WaitForCacheSync(stop)
	log.Printf("provisioner %s ready, volumes under %s", p.name, p.root)
	<-stop
}

// claim provisions a PV for a pending claim of one of our classes with a selected node.
func (p *provisioner) claim(o interface{}) {
	pvc, ok := o.(*corev1.PersistentVolumeClaim)
	if !ok || pvc.Spec.VolumeName != "" || pvc.Status.Phase != corev1.ClaimPending ||
		pvc.DeletionTimestamp != nil || pvc.Spec.StorageClassName == nil {
		return
	}
	obj, exists, _ := p.sc.GetByKey(*pvc.Spec.StorageClassName)
	if !exists {
		return
	}
	class := obj.(*storagev1.StorageClass)
	if class.Provisioner != p.name {
		return
	}
	node := pvc.Annotations[annSelectedNode]
	if node == "" && class.VolumeBindingMode != nil && *class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer {
		return // the scheduler has not picked a node yet
	}
	pvName := "pvc-" + string(pvc.UID)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.client.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{}); err == nil {
		return // already provisioned; the PV controller binds it
	}
	dir := filepath.Join(p.root, fmt.Sprintf("%s_%s_%s", pvc.Namespace, pvc.Name, pvName))
	if err := os.MkdirAll(dir, 0o777); err != nil {
		log.Printf("claim %s/%s: %v", pvc.Namespace, pvc.Name, err)
		return
	}
	if err := os.Chmod(dir, 0o777); err != nil { // not subject to the umask
		log.Printf("claim %s/%s: %v", pvc.Namespace, pvc.Name, err)
		return
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	if class.ReclaimPolicy != nil {
		reclaim = *class.ReclaimPolicy
	}
	hostPathType := corev1.HostPathDirectoryOrCreate
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        pvName,
			Annotations: map[string]string{annProvisionedBy: p.name, annPath: dir},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: pvc.Spec.Resources.Requests[corev1.ResourceStorage]},
			AccessModes:                   pvc.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              class.Name,
			VolumeMode:                    pvc.Spec.VolumeMode,
			MountOptions:                  class.MountOptions,
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &hostPathType},
			},
		},
	}
	if node != "" {
		pv.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
				Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{node},
			}}}},
		}}
	}
	if _, err := p.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			log.Printf("claim %s/%s: create PV: %v", pvc.Namespace, pvc.Name, err)
		}
		return
	}
	log.Printf("claim %s/%s: provisioned %s at %s", pvc.Namespace, pvc.Name, pvName, dir)
}

// volume deletes a Released PV of ours whose reclaim policy is Delete, and its directory.
func (p *provisioner) volume(o interface{}) {
	pv, ok := o.(*corev1.PersistentVolume)
	if !ok || pv.Annotations[annProvisionedBy] != p.name || pv.DeletionTimestamp != nil ||
		pv.Status.Phase != corev1.VolumeReleased ||
		pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		return
	}
	dir := pv.Annotations[annPath]
	if dir == "" && pv.Spec.HostPath != nil {
		dir = pv.Spec.HostPath.Path
	}
	// Only ever remove a direct child of our root.
	if dir != "" && filepath.Dir(filepath.Clean(dir)) == p.root && strings.Contains(filepath.Base(dir), pv.Name) {
		if err := os.RemoveAll(dir); err != nil {
			log.Printf("volume %s: remove %s: %v", pv.Name, dir, err)
			return
		}
	} else {
		log.Printf("volume %s: not removing %q (outside %s)", pv.Name, dir, p.root)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := p.client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return // deleted on an earlier event
	}
	if err != nil {
		log.Printf("volume %s: delete: %v", pv.Name, err)
		return
	}
	log.Printf("volume %s: released, deleted with %s", pv.Name, dir)
}
