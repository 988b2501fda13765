// Command drainrollout measures what a gateway's drain delay
// (GATEWAY__SHUTDOWNDELAY) changes during a rollout: two gateway processes
// in front of one origin, behind a round-robin TCP balancer that, like
// kube-proxy or a cloud load balancer, stops sending new connections to a
// terminating gateway only -lag after its SIGTERM. Clients open a new
// connection per request; a connection the balancer cannot forward (the
// backend refused it) fails. For each delay it prints the requests served
// and failed around one gateway's termination.
//
//	go run ./bench/cmd/drainrollout -bin bin/stella-mirror -delays 0s,2s -lag 1s
//
// It is a measurement, not a test: it starts processes on 127.0.0.1 only.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/internal/devcert"
)

func main() {
	bin := flag.String("bin", "bin/stella-mirror", "the stella-mirror binary")
	delays := flag.String("delays", "0s,2s", "GATEWAY__SHUTDOWNDELAY values to compare, comma-separated")
	lag := flag.Duration("lag", time.Second, "how long after SIGTERM the balancer keeps routing new connections to the terminating gateway")
	clients := flag.Int("clients", 4, "client loops")
	flag.Parse()
	if err := run(*bin, strings.Split(*delays, ","), *lag, *clients); err != nil {
		fmt.Fprintln(os.Stderr, "drainrollout:", err)
		os.Exit(1)
	}
}

type proc struct {
	cmd    *exec.Cmd
	addrs  map[string]string
	done   chan struct{} // closed at the exit, exited set
	exited time.Time
}

// start runs bin sub with env and returns once it logged "listening" for
// every endpoint in want.
func start(bin, sub string, env []string, want ...string) (*proc, error) {
	p := &proc{cmd: exec.Command(bin, sub), addrs: map[string]string{}, done: make(chan struct{})}
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		n := 0
		for sc.Scan() {
			var r struct{ Msg, Endpoint, Addr string }
			if json.Unmarshal(sc.Bytes(), &r) == nil && r.Msg == "listening" {
				p.addrs[r.Endpoint] = r.Addr
				if n++; n == len(want) {
					close(ready)
				}
			}
		}
		p.cmd.Wait()
		p.exited = time.Now()
		close(p.done)
	}()
	select {
	case <-ready:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before listening", sub)
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		return nil, fmt.Errorf("%s did not listen within 30s", sub)
	}
}

func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// balancer forwards each accepted connection to the next backend in turn,
// without retrying a refused dial (iptables DNAT does not either).
type balancer struct {
	ln       net.Listener
	mu       sync.Mutex
	backends []string
	next     int
	refused  atomic.Int64
}

func (b *balancer) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		be := b.backends[b.next%len(b.backends)]
		b.next++
		b.mu.Unlock()
		go func() {
			defer c.Close()
			u, err := net.DialTimeout("tcp", be, 5*time.Second)
			if err != nil {
				b.refused.Add(1)
				return
			}
			defer u.Close()
			go func() { io.Copy(u, c); u.(*net.TCPConn).CloseWrite() }()
			io.Copy(c, u)
		}()
	}
}

func (b *balancer) remove(addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var keep []string
	for _, be := range b.backends {
		if be != addr {
			keep = append(keep, be)
		}
	}
	b.backends = keep
}

func run(bin string, delays []string, lag time.Duration, clients int) error {
	dir, err := os.MkdirTemp("", "drainrollout")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "exports")
	if _, err := fixture.Write(root, fixture.Options{Domains: []string{"primary"}, BundleSize: 8 << 10, VEXSize: 2 << 10, SetLatest: true}); err != nil {
		return err
	}
	ca, err := devcert.NewCA("drainrollout CA", time.Hour)
	if err != nil {
		return err
	}
	leaf, err := ca.Issue(devcert.LeafOptions{Names: []string{"mirror.localhost"}})
	if err != nil {
		return err
	}
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := leaf.WriteFiles(cert, key); err != nil {
		return err
	}
	origin, err := start(bin, "origin", []string{"CONCELIER__MIRROR__ENABLED=true", "CONCELIER__MIRROR__EXPORTROOT=" + root,
		"ORIGIN__LISTEN=127.0.0.1:0", "ORIGIN__ADMINLISTEN=127.0.0.1:0"}, "origin", "origin-admin")
	if err != nil {
		return err
	}
	defer origin.stop()
	fmt.Printf("lag %s, %d client loops, a new TLS connection per request\n", lag, clients)
	for _, delay := range delays {
		gwEnv := []string{"GATEWAY__LISTEN=127.0.0.1:0", "GATEWAY__HTTPLISTEN=", "GATEWAY__ADMINLISTEN=127.0.0.1:0",
			"GATEWAY__ORIGIN=http://" + origin.addrs["origin"], "GATEWAY__SHUTDOWNDELAY=" + delay,
			"GATEWAY__SITES__0__HOSTS__0=mirror.localhost", "GATEWAY__SITES__0__DOMAINS__0=primary",
			"GATEWAY__SITES__0__CERTFILE=" + cert, "GATEWAY__SITES__0__KEYFILE=" + key, "GATEWAY__SITES__0__ANONYMOUS=true"}
		a, err := start(bin, "gateway", gwEnv, "gateway", "gateway-admin")
		if err != nil {
			return err
		}
		bgw, err := start(bin, "gateway", gwEnv, "gateway", "gateway-admin")
		if err != nil {
			a.stop()
			return err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lb := &balancer{ln: ln, backends: []string{a.addrs["gateway"], bgw.addrs["gateway"]}}
		go lb.serve()
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{RootCAs: ca.Pool()},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, ln.Addr().String())
			}}}
		var ok, failed atomic.Int64
		var firstErr atomic.Value
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					resp, err := client.Get("https://mirror.localhost/concelier/exports/index.json")
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							err = errors.New(resp.Status)
						}
					}
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
						continue
					}
					ok.Add(1)
				}
			}()
		}
		time.Sleep(time.Second) // traffic on both gateways
		t0 := time.Now()
		a.cmd.Process.Signal(syscall.SIGTERM)
		time.Sleep(lag)
		lb.remove(a.addrs["gateway"]) // the balancer noticed
		<-a.done
		exitAfter := a.exited.Sub(t0)
		time.Sleep(500 * time.Millisecond)
		cancel()
		wg.Wait()
		ln.Close()
		bgw.stop()
		e, _ := firstErr.Load().(string)
		fmt.Printf("delay %-4s: %6d requests ok, %4d failed (%d connections refused by the terminating gateway); it exited %.1fs after SIGTERM; first error: %q\n",
			delay, ok.Load(), failed.Load(), lb.refused.Load(), exitAfter.Seconds(), e)
	}
	return nil
}
