package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func newTestDriver(t *testing.T) *driver {
	t.Helper()
	root := t.TempDir()
	d := &driver{name: "test.csi", nodeID: "n", volumes: filepath.Join(root, "volumes"), snaps: filepath.Join(root, "snapshots")}
	for _, dir := range []string{d.volumes, d.snaps} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

var mountCaps = []*csi.VolumeCapability{{
	AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}}

func code(err error) codes.Code { return status.Code(err) }

// The whole controller path the sidecars drive: volume, snapshot, change, restore, delete.
func TestSnapshotRestoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	if _, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-a", VolumeCapabilities: mountCaps}); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(d.volumes, "pvc-a")
	if st, err := os.Stat(src); err != nil || st.Mode().Perm() != 0o777 {
		t.Fatalf("volume dir %v, %v: want mode 0777", st, err)
	}
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "f"), []byte("before"), 0o600); err != nil {
		t.Fatal(err)
	}
	snap, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snapshot-1", SourceVolumeId: "pvc-a"})
	if err != nil {
		t.Fatal(err)
	}
	if s := snap.Snapshot; !s.ReadyToUse || s.SourceVolumeId != "pvc-a" || s.SizeBytes == 0 || s.CreationTime == nil {
		t.Fatalf("snapshot %+v", s)
	}
	// A retried CreateSnapshot returns the same snapshot; another source is refused.
	again, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snapshot-1", SourceVolumeId: "pvc-a"})
	if err != nil || again.Snapshot.CreationTime.AsTime() != snap.Snapshot.CreationTime.AsTime() {
		t.Fatalf("retry: %v %v", again, err)
	}
	if _, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-b", VolumeCapabilities: mountCaps}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snapshot-1", SourceVolumeId: "pvc-b"}); code(err) != codes.AlreadyExists {
		t.Fatalf("same name, other source: %v", err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "f"), []byte("after"), 0o600); err != nil {
		t.Fatal(err)
	}

	_, err = d.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name: "pvc-r", VolumeCapabilities: mountCaps,
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "snapshot-1"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	restored := filepath.Join(d.volumes, "pvc-r")
	got, err := os.ReadFile(filepath.Join(restored, "sub", "f"))
	if err != nil || string(got) != "before" {
		t.Fatalf("restored file %q, %v: want the content at snapshot time", got, err)
	}
	if st, err := os.Stat(filepath.Join(restored, "sub")); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("restored sub dir %v, %v: want mode 0700 kept", st, err)
	}

	list, err := d.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SourceVolumeId: "pvc-a"})
	if err != nil || len(list.Entries) != 1 || list.Entries[0].Snapshot.SnapshotId != "snapshot-1" {
		t.Fatalf("list by source: %v %v", list, err)
	}
	list, err = d.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SnapshotId: "snapshot-none"})
	if err != nil || len(list.Entries) != 0 {
		t.Fatalf("list unknown id: %v %v", list, err)
	}

	if _, err := d.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: "snapshot-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: "snapshot-1"}); err != nil {
		t.Fatalf("delete is idempotent: %v", err)
	}
	for _, v := range []string{"pvc-a", "pvc-b", "pvc-r"} {
		if _, err := d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v}); err != nil {
			t.Fatal(err)
		}
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(d.volumes), "*", "*"))
	if len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

func TestRefusals(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	if _, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "../escape", VolumeCapabilities: mountCaps}); code(err) != codes.InvalidArgument {
		t.Fatalf("path in a name: %v", err)
	}
	if _, err := d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "/etc"}); code(err) != codes.InvalidArgument {
		t.Fatalf("path as volume id: %v", err)
	}
	block := []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}}}
	if _, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-x", VolumeCapabilities: block}); code(err) != codes.InvalidArgument {
		t.Fatalf("block volume: %v", err)
	}
	_, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name: "pvc-y", VolumeCapabilities: mountCaps,
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "snapshot-missing"},
		}},
	})
	if code(err) != codes.NotFound {
		t.Fatalf("missing snapshot source: %v", err)
	}
	if _, err := os.Stat(filepath.Join(d.volumes, "pvc-y")); !os.IsNotExist(err) {
		t.Fatalf("a failed restore left a volume: %v", err)
	}
	if _, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snapshot-2", SourceVolumeId: "pvc-missing"}); code(err) != codes.NotFound {
		t.Fatalf("snapshot of a missing volume: %v", err)
	}
}

func TestMountedAt(t *testing.T) {
	if m, err := mountedAt("/proc"); err != nil || !m {
		t.Fatalf("/proc: %v %v", m, err)
	}
	if m, err := mountedAt(t.TempDir()); err != nil || m {
		t.Fatalf("temp dir: %v %v", m, err)
	}
}

// Only a mount of the volume itself (or a directory inside it) marks a process as a user.
func TestMountsVolume(t *testing.T) {
	info := "36 35 98:0 /var/tmp/kdb/csi/volumes/pvc-a /var/lib/postgresql/data rw,relatime - ext4 /dev/root rw\n" +
		"37 35 98:0 /csi/volumes/pvc-b/sub /data rw - ext4 /dev/sdb rw\n"
	for _, c := range []struct {
		id   string
		want bool
	}{{"pvc-a", true}, {"pvc-b", true}, {"pvc-c", false}, {"pvc", false}} {
		if got := mountsVolume(info, "volumes", c.id); got != c.want {
			t.Errorf("mountsVolume(%q) = %v, want %v", c.id, got, c.want)
		}
	}
}

// A process using the volume (its own mount namespace is not available in a unit test) is
// not found by mistake: the test process's namespace is the driver's own, never stopped.
func TestFreezeStopsNothingInTheDriversNamespace(t *testing.T) {
	d := newTestDriver(t)
	thaw, n := d.freezeUsers("pvc-none")
	thaw()
	if n != 0 {
		t.Fatalf("stopped %d processes", n)
	}
}
