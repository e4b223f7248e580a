// csi-driver is the hostPath CSI driver of the local test cluster (test infrastructure, not
// product). It lets the real CSI sidecars (csi-provisioner, csi-snapshotter) and the
// snapshot-controller run against this single-node cluster, so VolumeSnapshots can be cut
// and restored. One host process serves all three CSI services on one unix socket:
//
//   - Controller: CreateVolume makes a directory <root>/volumes/<id> (mode 0777, like the
//     `standard` class: pods of any uid can write), filled from a snapshot when the request
//     has a snapshot content source; DeleteVolume removes it; CreateSnapshot archives the
//     volume directory into <root>/snapshots/<id>.tar (GNU tar, numeric owners, permissions
//     kept) while the processes using the volume are stopped (freeze.go); DeleteSnapshot removes the archive; ListSnapshots lists the archives.
//   - Node: NodePublishVolume bind-mounts the volume directory on kubelet's target path
//     (remounted read-only when asked); NodeUnpublishVolume unmounts it.
//   - Identity.
//
// The node-driver-registrar is not available here, so the driver registers itself with
// kubelet: it serves kubelet's plugin registration API (pluginregistration/v1) on a socket in
// kubelet's plugins_registry directory, pointing kubelet at the CSI socket.
//
// Usage: csi-driver --endpoint SOCK --root DIR --node-id NODE --registration-dir DIR
//
//	[--name csi-hostpath.kubectl-db.local]
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/protosanitizer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

const version = "0.1.0"

// IDs become file names: only allow what the sidecars generate (pvc-<uid>, snapshot-<uid>).
var validID = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$`)

type driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedNodeServer
	csi.UnimplementedGroupControllerServer
	registerapi.UnimplementedRegistrationServer

	name     string
	nodeID   string
	endpoint string
	volumes  string // <root>/volumes
	snaps    string // <root>/snapshots
	mu       sync.Mutex
}

func main() {
	endpoint := flag.String("endpoint", "", "unix socket path the CSI services are served on")
	root := flag.String("root", "", "directory holding volumes/ and snapshots/")
	nodeID := flag.String("node-id", "", "this node's name (NodeGetInfo)")
	regDir := flag.String("registration-dir", "", "kubelet's plugins_registry directory (empty: do not register)")
	name := flag.String("name", "csi-hostpath.kubectl-db.local", "CSI driver name")
	flag.Parse()
	if *endpoint == "" || *root == "" || *nodeID == "" {
		log.Fatal("--endpoint, --root and --node-id are required")
	}
	absRoot, err := filepath.Abs(*root)
	if err != nil {
		log.Fatal(err)
	}
	d := &driver{
		name: *name, nodeID: *nodeID, endpoint: *endpoint,
		volumes: filepath.Join(absRoot, "volumes"), snaps: filepath.Join(absRoot, "snapshots"),
	}
	for _, dir := range []string{d.volumes, d.snaps} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			log.Fatal(err)
		}
	}

	csiServer := grpc.NewServer(grpc.UnaryInterceptor(logCalls))
	csi.RegisterIdentityServer(csiServer, d)
	csi.RegisterControllerServer(csiServer, d)
	csi.RegisterNodeServer(csiServer, d)
	// No group snapshots; served so csi-snapshotter's capability probe gets an answer.
	csi.RegisterGroupControllerServer(csiServer, d)
	csiListener := listenUnix(*endpoint)
	go serve(csiServer, csiListener, "csi")

	var regServer *grpc.Server
	var regSock string
	if *regDir != "" {
		regSock = filepath.Join(*regDir, *name+"-reg.sock")
		regServer = grpc.NewServer()
		registerapi.RegisterRegistrationServer(regServer, d)
		// kubelet's plugin watcher finds the socket by its creation in the directory.
		go serve(regServer, listenUnix(regSock), "registration")
	}
	log.Printf("%s %s ready: CSI on %s, volumes under %s", d.name, version, *endpoint, absRoot)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	s := <-sig
	log.Printf("%v: stopping", s)
	if regServer != nil {
		// Removing the socket makes kubelet deregister the driver.
		regServer.Stop()
		_ = os.Remove(regSock)
	}
	csiServer.Stop()
	_ = os.Remove(*endpoint)
}

func listenUnix(path string) net.Listener {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		log.Fatal(err)
	}
	// A socket left by a killed predecessor would make Listen fail.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Fatal(err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		log.Fatal(err)
	}
	return l
}

func serve(s *grpc.Server, l net.Listener, what string) {
	if err := s.Serve(l); err != nil {
		log.Printf("%s server: %v", what, err)
	}
}

func logCalls(ctx context.Context, req interface{}, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (interface{}, error) {
	resp, err := h(ctx, req)
	method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	switch {
	case err != nil:
		log.Printf("%s %s: %v", method, protosanitizer.StripSecrets(req), err)
	case !strings.HasPrefix(method, "Probe") && !strings.HasPrefix(method, "Get") && !strings.HasSuffix(method, "Capabilities"):
		log.Printf("%s %s -> %s", method, protosanitizer.StripSecrets(req), protosanitizer.StripSecrets(resp))
	}
	return resp, err
}

// --- kubelet plugin registration ---------------------------------------------------------

func (d *driver) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              d.name,
		Endpoint:          d.endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

func (d *driver) NotifyRegistrationStatus(_ context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if s.PluginRegistered {
		log.Printf("registered with kubelet")
	} else {
		log.Printf("kubelet refused the registration: %s", s.Error)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

// --- identity ----------------------------------------------------------------------------

func (d *driver) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: d.name, VendorVersion: version}, nil
}

func (d *driver) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{{
		Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{
			Type: csi.PluginCapability_Service_CONTROLLER_SERVICE,
		}},
	}}}, nil
}

func (d *driver) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{}, nil
}

func (d *driver) GroupControllerGetCapabilities(context.Context, *csi.GroupControllerGetCapabilitiesRequest) (*csi.GroupControllerGetCapabilitiesResponse, error) {
	return &csi.GroupControllerGetCapabilitiesResponse{}, nil
}

// --- controller --------------------------------------------------------------------------

func (d *driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, c := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{Type: &csi.ControllerServiceCapability_Rpc{
			Rpc: &csi.ControllerServiceCapability_RPC{Type: c},
		}})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

func checkCaps(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return status.Error(codes.InvalidArgument, "volume capabilities missing")
	}
	for _, c := range caps {
		if c.GetBlock() != nil {
			return status.Error(codes.InvalidArgument, "block volumes are not supported, only filesystem")
		}
	}
	return nil
}

func (d *driver) volDir(id string) (string, error) {
	if !validID.MatchString(id) {
		return "", status.Errorf(codes.InvalidArgument, "invalid volume id %q", id)
	}
	return filepath.Join(d.volumes, id), nil
}

func (d *driver) snapFile(id string) (string, error) {
	if !validID.MatchString(id) {
		return "", status.Errorf(codes.InvalidArgument, "invalid snapshot id %q", id)
	}
	return filepath.Join(d.snaps, id+".tar"), nil
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

func (d *driver) CreateVolume(_ context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if err := checkCaps(req.VolumeCapabilities); err != nil {
		return nil, err
	}
	dir, err := d.volDir(req.Name)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	size := req.GetCapacityRange().GetRequiredBytes()
	vol := &csi.Volume{VolumeId: req.Name, CapacityBytes: size, ContentSource: req.VolumeContentSource}
	if exists(dir) { // a retried request: the sidecar may have timed out on the first one
		return &csi.CreateVolumeResponse{Volume: vol}, nil
	}
	tmp := dir + ".creating"
	_ = os.RemoveAll(tmp)
	if err := os.Mkdir(tmp, 0o777); err != nil {
		return nil, status.Errorf(codes.Internal, "create %s: %v", tmp, err)
	}
	if err := os.Chmod(tmp, 0o777); err != nil { // not subject to the umask
		return nil, status.Errorf(codes.Internal, "chmod %s: %v", tmp, err)
	}
	if src := req.GetVolumeContentSource(); src != nil {
		snap := src.GetSnapshot()
		if snap == nil {
			_ = os.RemoveAll(tmp)
			return nil, status.Error(codes.InvalidArgument, "only snapshots are supported as a volume content source")
		}
		file, err := d.snapFile(snap.SnapshotId)
		if err != nil {
			_ = os.RemoveAll(tmp)
			return nil, err
		}
		if !exists(file) {
			_ = os.RemoveAll(tmp)
			return nil, status.Errorf(codes.NotFound, "snapshot %s not found", snap.SnapshotId)
		}
		// The archive holds the directory itself ("."): its mode and owner come back too.
		if out, err := exec.Command("tar", "-C", tmp, "-xpf", file, "--numeric-owner").CombinedOutput(); err != nil {
			_ = os.RemoveAll(tmp)
			return nil, status.Errorf(codes.Internal, "restore snapshot %s: %v: %s", snap.SnapshotId, err, out)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, status.Errorf(codes.Internal, "rename %s: %v", tmp, err)
	}
	return &csi.CreateVolumeResponse{Volume: vol}, nil
}

func (d *driver) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	dir, err := d.volDir(req.VolumeId)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.RemoveAll(dir); err != nil {
		return nil, status.Errorf(codes.Internal, "remove %s: %v", dir, err)
	}
	return &csi.DeleteVolumeResponse{}, nil
}

func (d *driver) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	dir, err := d.volDir(req.VolumeId)
	if err != nil {
		return nil, err
	}
	if !exists(dir) {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", req.VolumeId)
	}
	if err := checkCaps(req.VolumeCapabilities); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext: req.VolumeContext, VolumeCapabilities: req.VolumeCapabilities, Parameters: req.Parameters,
	}}, nil
}

// snapshotOf describes an existing archive; the source volume is kept in a side file.
func (d *driver) snapshotOf(id string) (*csi.Snapshot, error) {
	file, err := d.snapFile(id)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	src, err := os.ReadFile(file + ".source")
	if err != nil {
		return nil, err
	}
	return &csi.Snapshot{
		SnapshotId: id, SourceVolumeId: strings.TrimSpace(string(src)), SizeBytes: st.Size(),
		CreationTime: timestamppb.New(st.ModTime()), ReadyToUse: true,
	}, nil
}

func (d *driver) CreateSnapshot(_ context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	file, err := d.snapFile(req.Name)
	if err != nil {
		return nil, err
	}
	dir, err := d.volDir(req.SourceVolumeId)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, err := d.snapshotOf(req.Name); err == nil {
		if s.SourceVolumeId != req.SourceVolumeId {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists for volume %s", req.Name, s.SourceVolumeId)
		}
		return &csi.CreateSnapshotResponse{Snapshot: s}, nil
	}
	if !exists(dir) {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", req.SourceVolumeId)
	}
	tmp := file + ".creating"
	// The cut is a copy of the directory at one instant (crash-consistent, like a block
	// snapshot of a live disk): the volume's users are stopped during the copy (freeze.go).
	// The application quiesces around it if it wants more.
	thaw, frozen := d.freezeUsers(req.SourceVolumeId)
	started := time.Now()
	out, err := exec.Command("tar", "-C", dir, "-cf", tmp, "--numeric-owner", "--xattrs", ".").CombinedOutput()
	thaw()
	log.Printf("snapshot %s of %s: %d processes stopped for %v", req.Name, req.SourceVolumeId, frozen, time.Since(started).Round(time.Millisecond))
	if err != nil {
		// tar exits 1 when a file changed while it was read: the archive is still complete.
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			_ = os.Remove(tmp)
			return nil, status.Errorf(codes.Internal, "archive %s: %v: %s", dir, err, out)
		}
	}
	if err := os.WriteFile(file+".source", []byte(req.SourceVolumeId+"\n"), 0o644); err != nil {
		return nil, status.Errorf(codes.Internal, "write %s.source: %v", file, err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return nil, status.Errorf(codes.Internal, "rename %s: %v", tmp, err)
	}
	s, err := d.snapshotOf(req.Name)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "stat snapshot %s: %v", req.Name, err)
	}
	return &csi.CreateSnapshotResponse{Snapshot: s}, nil
}

func (d *driver) DeleteSnapshot(_ context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	file, err := d.snapFile(req.SnapshotId)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range []string{file, file + ".source"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, status.Errorf(codes.Internal, "remove %s: %v", f, err)
		}
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

func (d *driver) ListSnapshots(_ context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []string
	if req.SnapshotId != "" {
		ids = []string{req.SnapshotId}
	} else {
		files, _ := filepath.Glob(filepath.Join(d.snaps, "*.tar"))
		for _, f := range files {
			ids = append(ids, strings.TrimSuffix(filepath.Base(f), ".tar"))
		}
		sort.Strings(ids)
	}
	resp := &csi.ListSnapshotsResponse{}
	for _, id := range ids {
		s, err := d.snapshotOf(id)
		if err != nil || (req.SourceVolumeId != "" && s.SourceVolumeId != req.SourceVolumeId) {
			continue // an unknown id gives an empty list, as the spec asks
		}
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: s})
	}
	return resp, nil
}

// --- node --------------------------------------------------------------------------------

func (d *driver) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: d.nodeID}, nil
}

func (d *driver) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	return &csi.NodeGetCapabilitiesResponse{}, nil // no staging: publish bind-mounts directly
}

// mountedAt reports whether path is a mount point (mountinfo field 5, octal-escaped).
func mountedAt(path string) (bool, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	esc := strings.NewReplacer(" ", `\040`, "\t", `\011`, "\n", `\012`, `\`, `\134`).Replace(path)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == esc {
			return true, nil
		}
	}
	return false, nil
}

func (d *driver) NodePublishVolume(_ context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	if req.TargetPath == "" {
		return nil, status.Error(codes.InvalidArgument, "target path missing")
	}
	if err := checkCaps([]*csi.VolumeCapability{req.VolumeCapability}); err != nil {
		return nil, err
	}
	dir, err := d.volDir(req.VolumeId)
	if err != nil {
		return nil, err
	}
	if !exists(dir) {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", req.VolumeId)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if m, err := mountedAt(req.TargetPath); err != nil {
		return nil, status.Errorf(codes.Internal, "read mounts: %v", err)
	} else if m {
		return &csi.NodePublishVolumeResponse{}, nil // already published
	}
	if err := os.MkdirAll(req.TargetPath, 0o750); err != nil {
		return nil, status.Errorf(codes.Internal, "create %s: %v", req.TargetPath, err)
	}
	if err := syscall.Mount(dir, req.TargetPath, "", syscall.MS_BIND, ""); err != nil {
		return nil, status.Errorf(codes.Internal, "bind mount %s on %s: %v", dir, req.TargetPath, err)
	}
	if req.Readonly {
		// A bind mount only becomes read-only by a remount of the bind.
		if err := syscall.Mount("", req.TargetPath, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			_ = syscall.Unmount(req.TargetPath, 0)
			return nil, status.Errorf(codes.Internal, "remount %s read-only: %v", req.TargetPath, err)
		}
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

func (d *driver) NodeUnpublishVolume(_ context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if req.TargetPath == "" {
		return nil, status.Error(codes.InvalidArgument, "target path missing")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := 0; ; i++ {
		m, err := mountedAt(req.TargetPath)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "read mounts: %v", err)
		}
		if !m {
			break
		}
		if err := syscall.Unmount(req.TargetPath, 0); err != nil {
			if i < 10 && errors.Is(err, syscall.EBUSY) {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			return nil, status.Errorf(codes.Internal, "unmount %s: %v", req.TargetPath, err)
		}
	}
	if err := os.Remove(req.TargetPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, status.Errorf(codes.Internal, "remove %s: %v", req.TargetPath, err)
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}
