// Command dist builds bpfmon's release artefacts from the repository it is
// run in (make dist runs it): for each architecture a static binary with
// the version stamped from git, a Debian package and an OCI image of the
// binary alone as a docker-archive tarball, and a SHA256SUMS listing of
// them all.
//
// It is a module of its own so that the packaging libraries (nfpm for the
// .deb, go-containerregistry for the image) stay out of bpfmon's. No
// archive format is written by hand here, and the image is assembled from
// scratch in memory: no container daemon, no base image pulled.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
)

// Where the package puts things. The unit (contrib/systemd) is written for
// a binary installed by hand in /usr/local/bin; the package's is /usr/bin.
const (
	binPath       = "/usr/bin/bpfmon"
	unitPath      = "/usr/lib/systemd/system/bpfmon.service"
	policyPath    = "/etc/bpfmon/policy.yaml"
	logrotatePath = "/etc/logrotate.d/bpfmon"
	manPath       = "/usr/share/man/man8/bpfmon.8.gz"
	stateDir      = "/var/lib/bpfmon"
	logDir        = "/var/log/bpfmon"
	unitBinPath   = "/usr/local/bin/bpfmon" // as contrib/systemd/bpfmon.service has it
)

// The image: the DaemonSet (contrib/kubernetes/bpfmon.yaml) runs /bpfmon
// with its own command line; these are what `podman run IMAGE` gets alone.
var (
	imageEntrypoint = []string{"/bpfmon"}
	imageCmd        = []string{"watch", "--format", "json"}
	metricsPort     = "9567/tcp"
)

func main() {
	out := flag.String("out", "dist", "directory for the artefacts (relative to the repository's root)")
	archs := flag.String("arch", "amd64,arm64", "comma-separated GOARCH values")
	version := flag.String("version", "", "version to stamp (default: git describe --tags --always --dirty)")
	flag.Parse()
	if err := run(*out, strings.Split(*archs, ","), *version); err != nil {
		fmt.Fprintln(os.Stderr, "dist:", err)
		os.Exit(1)
	}
}

func run(out string, archs []string, version string) error {
	root, err := git("", "rev-parse", "--show-toplevel")
	if err != nil {
		return fmt.Errorf("not in bpfmon's git repository: %w", err)
	}
	if version == "" {
		if version, err = git(root, "describe", "--tags", "--always", "--dirty"); err != nil {
			return err
		}
	}
	debVer, err := debVersion(version, root)
	if err != nil {
		return err
	}
	// Every file in the artefacts carries the commit's time, so that two
	// runs on one commit give the same bytes.
	ct, err := git(root, "log", "-1", "--format=%ct")
	if err != nil {
		return err
	}
	sec, _ := strconv.ParseInt(ct, 10, 64)
	mtime := time.Unix(sec, 0).UTC()

	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "bpfmon-dist-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	shared, err := packageFiles(root, tmp)
	if err != nil {
		return err
	}

	var made []string
	for _, arch := range archs {
		if arch != "amd64" && arch != "arm64" {
			return fmt.Errorf("-arch %s: bpfmon builds for amd64 and arm64 (its BPF objects are generated for those)", arch)
		}
		bin := filepath.Join(out, fmt.Sprintf("bpfmon_%s_linux_%s", version, arch))
		if err := build(root, arch, version, bin); err != nil {
			return err
		}
		deb := filepath.Join(out, fmt.Sprintf("bpfmon_%s_%s.deb", debVer, arch))
		if err := debPackage(deb, bin, arch, debVer, mtime, shared); err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(deb), err)
		}
		img := filepath.Join(out, fmt.Sprintf("bpfmon_%s_linux_%s.image.tar", version, arch))
		if err := image(img, bin, arch, version, mtime); err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(img), err)
		}
		made = append(made, bin, deb, img)
	}
	sums, err := checksums(out, made)
	if err != nil {
		return err
	}
	for _, f := range append(made, sums) {
		st, err := os.Stat(f)
		if err != nil {
			return err
		}
		fmt.Printf("%10d  %s\n", st.Size(), f)
	}
	return nil
}

func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return strings.TrimSpace(string(out)), nil
}

var tagged = regexp.MustCompile(`^v?([0-9]+\.[0-9]+\.[0-9]+)(-.*)?$`)

// debVersion turns git's description into a Debian version: v1.2.3 is
// 1.2.3, v1.2.3-4-gabc1234-dirty (commits after a tag) 1.2.3+4.gabc1234.dirty,
// and an untagged commit 0.0.0+gitYYYYMMDD.abc1234 (its commit date), so
// that later commits sort later.
func debVersion(version, root string) (string, error) {
	if m := tagged.FindStringSubmatch(version); m != nil {
		if m[2] == "" {
			return m[1], nil
		}
		return m[1] + "+" + strings.ReplaceAll(m[2][1:], "-", "."), nil
	}
	date, err := git(root, "log", "-1", "--format=%cd", "--date=format:%Y%m%d%H%M%S")
	if err != nil {
		return "", err
	}
	return "0.0.0+git" + date + "." + strings.ReplaceAll(version, "-", "."), nil
}

func build(root, arch, version, out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", out, "./cmd/bpfmon")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/bpfmon for %s: %v\n%s", arch, err, b)
	}
	return nil
}

// packageFiles writes what every package holds besides the binary, each
// derived from its source in the repository, into dir; it returns their
// paths by destination.
func packageFiles(root, dir string) (map[string]string, error) {
	read := func(p string) (string, error) {
		b, err := os.ReadFile(filepath.Join(root, p))
		return string(b), err
	}
	unit, err := read("contrib/systemd/bpfmon.service")
	if err != nil {
		return nil, err
	}
	if !strings.Contains(unit, "ExecStart="+unitBinPath+" ") {
		return nil, fmt.Errorf("contrib/systemd/bpfmon.service: no ExecStart=%s: where does it expect the binary?", unitBinPath)
	}
	unit = strings.ReplaceAll(unit, unitBinPath, binPath)
	example, err := read("contrib/policy.example.yaml")
	if err != nil {
		return nil, err
	}
	man, err := read("docs/bpfmon.8")
	if err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.Write([]byte(man))
	zw.Close()

	contents := map[string]string{
		unitPath:      unit,
		policyPath:    DefaultPolicy(example),
		logrotatePath: logrotate,
		manPath:       gz.String(),
		"postinst":    postinst,
		"postrm":      postrm,
	}
	paths := map[string]string{}
	for dst, data := range contents {
		p := filepath.Join(dir, strings.ReplaceAll(strings.TrimPrefix(dst, "/"), "/", "_"))
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			return nil, err
		}
		paths[dst] = p
	}
	return paths, nil
}

// DefaultPolicy is the policy the package installs: the example's every
// entry commented out, its explanations kept, so that bpfmon starts
// guarding its own maps only and the administrator uncomments what applies.
func DefaultPolicy(example string) string {
	var b strings.Builder
	b.WriteString(`# Installed by the bpfmon package (a conffile: your edits survive upgrades).
# As installed it protects no map but bpfmon's own; the entries below are
# examples, commented out: uncomment and edit what applies to this host,
# then: systemctl reload bpfmon
#
`)
	for _, line := range strings.SplitAfter(example, "\n") {
		t := strings.TrimSpace(line)
		switch {
		case t == "", strings.HasPrefix(t, "#"), strings.HasPrefix(line, "version:"):
			b.WriteString(line)
		default:
			b.WriteString("# " + line)
		}
	}
	b.WriteString("\n# What the entries above would set; nothing, as installed.\nprotect: []\nowners: []\n")
	return b.String()
}

// logrotate moves the events file away; SIGHUP makes bpfmon reopen
// --output (and read its policy again). `systemctl kill` signals the
// service's main process only, and nothing when it is not running.
const logrotate = `# bpfmon's events (JSON lines), written by the bpfmon service.
/var/log/bpfmon/events.json {
	daily
	rotate 14
	maxsize 100M
	compress
	delaycompress
	missingok
	notifempty
	create 0600 root root
	postrotate
		systemctl kill --kill-whom=main --signal=HUP bpfmon.service >/dev/null 2>&1 || true
	endscript
}
`

// The maintainer scripts only tell systemd that its unit files changed: a
// security monitor needs a policy first, so enabling it is left to the
// administrator (systemctl enable --now bpfmon).
const postinst = `#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null || true
fi
`

const postrm = `#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null || true
fi
if [ "$1" = purge ]; then
	rm -rf /var/lib/bpfmon /var/log/bpfmon
fi
`

func debPackage(out, bin, arch, version string, mtime time.Time, shared map[string]string) error {
	file := func(src, dst, typ string, mode os.FileMode) *files.Content {
		return &files.Content{Source: src, Destination: dst, Type: typ, FileInfo: &files.ContentFileInfo{Mode: mode, MTime: mtime}}
	}
	dir := func(dst string, mode os.FileMode) *files.Content {
		return &files.Content{Destination: dst, Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Mode: mode, MTime: mtime}}
	}
	info := &nfpm.Info{
		Name:          "bpfmon",
		Arch:          arch,
		Platform:      "linux",
		Version:       version,
		VersionSchema: "none",
		Section:       "admin",
		Priority:      "optional",
		Maintainer:    "bpfmon developers <bpfmon@users.noreply.github.com>",
		Homepage:      "https://github.com/bpfmon/bpfmon",
		Description: "reports every change to every eBPF map on this host\n" +
			"bpfmon watches the kernel's BPF maps: every update, delete and handle\n" +
			"acquisition, with the process or program behind it, and raises tamper\n" +
			"alerts on the maps its policy protects. The service (bpfmon.service) is\n" +
			"installed but not enabled: edit /etc/bpfmon/policy.yaml, then\n" +
			"systemctl enable --now bpfmon.",
		MTime: mtime,
		Overridables: nfpm.Overridables{
			Recommends: []string{"logrotate"},
			Contents: files.Contents{
				file(bin, binPath, "", 0o755),
				file(shared[unitPath], unitPath, "", 0o644),
				file(shared[policyPath], policyPath, files.TypeConfig, 0o600),
				file(shared[logrotatePath], logrotatePath, files.TypeConfig, 0o644),
				file(shared[manPath], manPath, "", 0o644),
				dir("/etc/bpfmon", 0o755),
				dir(stateDir, 0o700),
				dir(logDir, 0o700),
			},
			Scripts: nfpm.Scripts{PostInstall: shared["postinst"], PostRemove: shared["postrm"]},
			Deb:     nfpm.Deb{Compression: "xz"},
		},
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return err
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// image is bpfmon's container image: one layer holding /bpfmon, on no base.
func image(out, bin, arch, version string, mtime time.Time) error {
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	if err := tw.WriteHeader(&tar.Header{Name: "bpfmon", Mode: 0o755, Size: int64(len(data)), ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return err
	}
	tw.Write(data)
	if err := tw.Close(); err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar.Bytes())), nil
	})
	if err != nil {
		return err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: mtime}, CreatedBy: "bpfmon release/ (make dist): the static binary", Comment: version,
	}})
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	cfg.Created = v1.Time{Time: mtime}
	cfg.Config.Entrypoint = imageEntrypoint
	cfg.Config.Cmd = imageCmd
	cfg.Config.User = "0:0"
	cfg.Config.ExposedPorts = map[string]struct{}{metricsPort: {}}
	cfg.Config.Labels = map[string]string{
		"org.opencontainers.image.title":   "bpfmon",
		"org.opencontainers.image.version": version,
		"org.opencontainers.image.source":  "https://github.com/bpfmon/bpfmon",
	}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return err
	}
	tag, err := name.NewTag("bpfmon:" + version)
	if err != nil {
		return fmt.Errorf("version %q is no image tag: %w", version, err)
	}
	return tarball.WriteToFile(out, tag, img)
}

// checksums writes SHA256SUMS in dir, in the format `sha256sum -c` reads.
func checksums(dir string, paths []string) (string, error) {
	var b strings.Builder
	sorted := slices.Clone(paths)
	slices.Sort(sorted)
	for _, p := range sorted {
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || strings.HasPrefix(rel, "..") {
			return "", errors.Join(err, fmt.Errorf("%s is not in %s", p, dir))
		}
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(h.Sum(nil)), rel)
	}
	out := filepath.Join(dir, "SHA256SUMS")
	return out, os.WriteFile(out, []byte(b.String()), 0o644)
}
