package main

// Point-in-time cuts: the snapshot is a copy of a directory, which takes time, while a real
// CSI snapshot is atomic. So during the copy every process that has the volume mounted is
// stopped (SIGSTOP) and continued (SIGCONT) after it: the copy then sees the files as they
// were at one instant, as a block snapshot would. Processes are found by their mount
// namespace's mountinfo (a bind mount of the volume directory); processes in the driver's
// own mount namespace (kubelet, containerd, this driver: the host's view, which has every
// volume mounted) are never stopped, nor processes that were stopped already.

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// mountsVolume reports whether a mountinfo text has a mount whose root is dir or inside it.
// Field 4 of a mountinfo line is the mount's root within its file system; only the part
// from the volumes directory's name on is compared, since the host path of the file system
// is not known inside.
func mountsVolume(mountinfo, volumesDirName, id string) bool {
	want := "/" + volumesDirName + "/" + id
	sc := bufio.NewScanner(strings.NewReader(mountinfo))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		root := f[3]
		if strings.HasSuffix(root, want) || strings.Contains(root, want+"/") {
			return true
		}
	}
	return false
}

// procState is the state letter of /proc/PID/stat (R, S, D, T, t, Z...), or 0.
func procState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	return s[i+2]
}

// freezeUsers stops the processes using volume id and returns the function that continues
// them (always call it) and how many were stopped.
func (d *driver) freezeUsers(id string) (func(), int) {
	self, _ := os.Readlink("/proc/self/ns/mnt")
	entries, _ := os.ReadDir("/proc")
	uses := map[string]bool{} // mount namespace -> has the volume
	var stopped []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		ns, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "mnt"))
		if err != nil || ns == self {
			continue
		}
		has, seen := uses[ns]
		if !seen {
			info, err := os.ReadFile(filepath.Join("/proc", e.Name(), "mountinfo"))
			has = err == nil && mountsVolume(string(info), filepath.Base(d.volumes), id)
			uses[ns] = has
		}
		if !has || procState(pid) == 'T' || procState(pid) == 't' {
			continue
		}
		if syscall.Kill(pid, syscall.SIGSTOP) == nil {
			stopped = append(stopped, pid)
		}
	}
	// SIGSTOP takes effect when a process next leaves the kernel: wait until each one is
	// stopped (or gone), at most 2 s.
	deadline := time.Now().Add(2 * time.Second)
	for _, pid := range stopped {
		for time.Now().Before(deadline) {
			if st := procState(pid); st == 'T' || st == 't' || st == 0 || st == 'Z' {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	return func() {
		for _, pid := range stopped {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}, len(stopped)
}
