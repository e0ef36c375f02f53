package blobtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/outbound"
)

// S3ServerEnv names the SeaweedFS `weed` binary the S3 tests start. Set
// (as .ci/run does), those tests must run; unset, they skip.
const S3ServerEnv = "AGENTOS_TEST_S3_SERVER"

// S3Server is a running S3-compatible server with one identity.
type S3Server struct {
	Endpoint  string // http://127.0.0.1:port
	AccessKey string
	SecretKey string
	stop      func()
}

// StopS3 stops the server now (a test of an unreachable store).
func StopS3(t testing.TB, s S3Server) {
	t.Helper()
	s.stop()
}

// StartS3 starts SeaweedFS (`weed server` with its filer and S3 gateway)
// on free loopback ports with its data in a temp dir, waits until its S3
// endpoint answers, and stops it when t ends. It skips t when
// AGENTOS_TEST_S3_SERVER is unset.
func StartS3(t testing.TB) S3Server {
	t.Helper()
	weed := os.Getenv(S3ServerEnv)
	if weed == "" {
		t.Skipf("%s is not set (the path of SeaweedFS's weed binary; .ci/run builds it)", S3ServerEnv)
	}
	dir := t.TempDir()
	srv := S3Server{AccessKey: "agentos-test", SecretKey: "agentos-test-secret-0123456789"}
	cfg := fmt.Sprintf(`{"identities":[{"name":"agentos","credentials":[{"accessKey":%q,"secretKey":%q}],
		"actions":["Admin","Read","Write","List","Tagging"]}]}`, srv.AccessKey, srv.SecretKey)
	cfgPath := filepath.Join(dir, "s3.json")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	data := filepath.Join(dir, "data")
	require.NoError(t, os.Mkdir(data, 0o700))

	p := freePorts(t, 8)
	port := func(i int) string { return strconv.Itoa(p[i]) }
	args := []string{"server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-dir=" + data,
		"-master.port=" + port(0), "-master.port.grpc=" + port(1), "-master.telemetry=false",
		"-master.volumeSizeLimitMB=64", "-volume.max=0",
		"-volume.port=" + port(2), "-volume.port.grpc=" + port(3),
		"-filer", "-filer.port=" + port(4), "-filer.port.grpc=" + port(5),
		"-filer.localSocket=" + filepath.Join(dir, "filer.sock"),
		"-s3", "-s3.port=" + port(6), "-s3.port.grpc=" + port(7), "-s3.config=" + cfgPath,
		"-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.localSocket=" + filepath.Join(dir, "s3.sock"),
	}
	log, err := os.Create(filepath.Join(dir, "weed.log"))
	require.NoError(t, err)
	cmd := exec.Command(weed, args...)
	cmd.Stdout, cmd.Stderr, cmd.Dir = log, log, dir
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	var once sync.Once
	srv.stop = func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			<-exited
			_ = log.Close()
		})
	}
	t.Cleanup(srv.stop)
	srv.Endpoint = "http://127.0.0.1:" + port(6)

	// Ready when the gateway answers an S3 request (any HTTP status: an
	// anonymous ListBuckets is refused, but only once S3 is up) and the
	// filer behind it has a volume to write to (the test's first Put).
	client := outbound.Client(outbound.Timeouts{Dial: time.Second, ResponseHeader: 2 * time.Second}, nil)
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-exited:
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("weed exited before it was ready: %v\n%s", waitErr, tail(b))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.Endpoint+"/", nil)
		resp, err := client.Do(req)
		cancel()
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode < 500 {
				return srv
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("weed's S3 gateway did not answer within 90s: %v\n%s", err, tail(b))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// freePorts reserves n distinct free loopback ports (held open until all
// are found, so none repeats; a port may still be taken between their
// release and weed's bind, which the caller's readiness wait reports).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
