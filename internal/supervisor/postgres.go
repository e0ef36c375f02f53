package supervisor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// KindPostgres is a PostgreSQL server run from the machine's binaries
// (the cluster profile's store), with its cluster under
// $AGENTOS_HOME/postgres/data.
const KindPostgres = "postgres"

// PostgresUser and PostgresDB are the role and database the cluster
// profile creates in its own server.
const (
	PostgresUser = "agentos"
	PostgresDB   = "agentos"
)

// PostgresDir is where the managed server keeps its cluster and socket.
func PostgresDir(home string) string { return filepath.Join(home, "postgres") }

// PostgresPasswordFile holds the agentos role's password (0600).
func PostgresPasswordFile(home string) string {
	return filepath.Join(home, "secrets", "postgres.password")
}

// PostgresPassword returns the agentos role's password, creating it (32
// random bytes, hex) on first use.
func PostgresPassword(home string) (string, error) {
	p := PostgresPasswordFile(home)
	if b, err := os.ReadFile(p); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	pw := hex.EncodeToString(buf)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", err
	}
	return pw, os.WriteFile(p, []byte(pw+"\n"), 0o600)
}

// PostgresURL is the store URL of the managed server at addr.
func PostgresURL(addr, password string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(PostgresUser, password),
		Host: DialHost(addr), Path: "/" + PostgresDB, RawQuery: "sslmode=disable"}
	return u.String()
}

// PostgresBinDir finds the server binaries: $PG_BINDIR, the newest
// /usr/lib/postgresql/<major>/bin (Debian, Ubuntu), else initdb on PATH.
func PostgresBinDir() (string, error) {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		if !fileExists(filepath.Join(d, "initdb")) {
			return "", fmt.Errorf("PG_BINDIR=%s has no initdb", d)
		}
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if fileExists(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no PostgreSQL server binaries (initdb, postgres) under /usr/lib/postgresql/*/bin or on PATH: install PostgreSQL (apt-get install postgresql), set PG_BINDIR, or give AGENTOS_POSTGRES_URL")
}

// pgMajor is the major version in /usr/lib/postgresql/<major>/bin.
func pgMajor(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

// postgresOwner is who runs the server: the current user, or as root
// (initdb and postgres refuse root) the user postgres, else nobody.
func postgresOwner() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		if u, err = user.Lookup("nobody"); err != nil {
			return nil, errors.New("running as root, and there is no user postgres or nobody to run PostgreSQL as")
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// postgresProc runs the managed PostgreSQL server. Its settings are the
// durable defaults (fsync and synchronous commit on), unlike the test
// script's.
type postgresProc struct{}

// prepare creates the cluster once: initdb with the agentos role (its
// password from PostgresPassword; scram for TCP, trust on the socket in
// the 0700 directory).
func (postgresProc) prepare(n *Node, s Service) error {
	dir := PostgresDir(n.Cfg.Home)
	if fileExists(filepath.Join(dir, "data", "PG_VERSION")) {
		return nil
	}
	bin, err := PostgresBinDir()
	if err != nil {
		return err
	}
	cred, err := postgresOwner()
	if err != nil {
		return err
	}
	pw, err := PostgresPassword(n.Cfg.Home)
	if err != nil {
		return err
	}
	if err := ownedDir(dir, cred); err != nil {
		return err
	}
	pwFile := filepath.Join(dir, "initdb.pw")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwFile)
	if cred != nil {
		if err := os.Chown(pwFile, int(cred.Uid), int(cred.Gid)); err != nil {
			return err
		}
	}
	cmd := exec.Command(filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", PostgresUser,
		"--pwfile="+pwFile, "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb in %s: %v\n%s", dir, err, out)
	}
	return nil
}

// ownedDir makes dir (0700) belong to cred's user, lets that user search
// its parent (the home), and checks it can reach dir (a private directory
// above the home would stop it).
func ownedDir(dir string, cred *syscall.Credential) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if cred == nil {
		return nil
	}
	if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
		return err
	}
	// The home is often private (0700): let the server's user through it
	// (search only, o+x; what it holds keeps its own modes).
	if st, err := os.Stat(filepath.Dir(dir)); err == nil && st.Mode().Perm()&0o001 == 0 {
		if err := os.Chmod(filepath.Dir(dir), st.Mode().Perm()|0o001); err != nil {
			return err
		}
	}
	probe := exec.Command("test", "-w", dir)
	probe.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if probe.Run() != nil {
		return fmt.Errorf("%s is not reachable by uid %d, which runs PostgreSQL as root may not (make its parent directories traversable: chmod o+x)", dir, cred.Uid)
	}
	return nil
}

func (postgresProc) command(n *Node, s Service) (*exec.Cmd, error) {
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := postgresOwner()
	if err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return nil, fmt.Errorf("postgres address %q: %w", s.Addr, err)
	}
	dir := PostgresDir(n.Cfg.Home)
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", filepath.Join(dir, "data"),
		"-c", "listen_addresses="+host, "-c", "port="+port, "-c", "unix_socket_directories="+dir,
		"-c", "max_connections=300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return cmd, nil
}

// health connects and asks the server's version: for the managed server
// to its maintenance database (the agentos one may not exist yet).
func (postgresProc) health(ctx context.Context, _ *Node, s Service) (string, error) {
	target := s.URL
	if !s.External {
		target = maintenanceURL(s.URL)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, target)
	if err != nil {
		return "", fmt.Errorf("connect %s: %w", redactURL(target), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var v string
	err = conn.QueryRow(ctx, "SHOW server_version").Scan(&v)
	return v, err
}

func (postgresProc) owns(cmdline string) bool { return strings.Contains(cmdline, "postgres") }

// signal sends SIGINT, PostgreSQL's fast shutdown (SIGTERM would wait for
// every client to disconnect), to the postmaster alone: it stops its
// backends itself.
func (postgresProc) signal(pid int) { _ = syscall.Kill(pid, syscall.SIGINT) }

// maintenanceURL is u with the database "postgres".
func maintenanceURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path = "/postgres"
	return u.String()
}

// EnsureDatabase creates the database of s.URL in the managed server when
// it is missing.
func EnsureDatabase(ctx context.Context, s Service) error {
	u, err := url.Parse(s.URL)
	if err != nil {
		return err
	}
	db := strings.TrimPrefix(u.Path, "/")
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, maintenanceURL(s.URL))
	if err != nil {
		return fmt.Errorf("connect %s: %w", redactURL(maintenanceURL(s.URL)), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil || exists {
		return err
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize())
	return err
}
