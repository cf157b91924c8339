package main

import (
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A response arriving in pieces, split anywhere, is read whole, and only
// once it is whole.
func TestResponseInPieces(t *testing.T) {
	full := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 13\r\n\r\n{\"a\":[1,2,3]}"
	for cut1 := 1; cut1 < len(full); cut1++ {
		for _, cut2 := range []int{cut1, (cut1 + len(full)) / 2, len(full)} {
			var r response
			r.reset()
			var done, ok bool
			given := 0
			for i, piece := range []string{full[:cut1], full[cut1:cut2], full[cut2:]} {
				var err error
				if done, ok, err = r.add([]byte(piece)); err != nil {
					t.Fatalf("cut at %d, %d: piece %d: %v", cut1, cut2, i, err)
				}
				given += len(piece)
				if done != (given == len(full)) {
					t.Fatalf("cut at %d, %d: done %v after %d of %d bytes", cut1, cut2, done, given, len(full))
				}
			}
			if !done || !ok {
				t.Fatalf("cut at %d, %d: done %v ok %v", cut1, cut2, done, ok)
			}
		}
	}
}

func TestResponseRefused(t *testing.T) {
	for _, resp := range []string{
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab",
		"SMTP 220\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n",
	} {
		var r response
		r.reset()
		if _, _, err := r.add([]byte(resp)); err == nil {
			t.Errorf("%q: no error", resp)
		}
	}
	var r response
	r.reset()
	if done, ok, err := r.add([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")); err != nil || !done || ok || r.close {
		t.Errorf("503: done %v ok %v close %v err %v; want done, not ok, kept open", done, ok, r.close, err)
	}
	for _, resp := range []string{"HTTP/1.1 200 OK\r\nconnection:  Close \r\nContent-Length: 0\r\n\r\n", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"} {
		r.reset()
		if done, ok, err := r.add([]byte(resp)); err != nil || !done || !ok || !r.close {
			t.Errorf("%q: done %v ok %v close %v err %v; want done, ok, closing", resp, done, ok, r.close, err)
		}
	}
}

// Against a real server: every arrival is sent and answered, also on
// connections the server closes after an answer (as gunicorn's sync
// workers do after each), and the answers that are not 200 are counted as
// failures, exactly.
func TestGeneratorAgainstServer(t *testing.T) {
	var served, failedByServer atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/predict" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request line or headers", http.StatusBadRequest)
			return
		}
		n := served.Add(1)
		if n%3 == 0 {
			w.Header().Set("Connection", "close")
		}
		if n%5 == 0 {
			failedByServer.Add(1)
			http.Error(w, "every fifth fails", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"prediction":1}`))
	})}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	u, _ := url.Parse("http://" + ln.Addr().String() + "/predict")
	addr := ln.Addr().(*net.TCPAddr)
	g, err := newGenerator(addr, 4, request(u, "application/json", []byte(`{"input":[1,2]}`)), 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	if err := g.run(2000, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if len(g.lat) == 0 || int64(len(g.lat)) != served.Load() {
		t.Fatalf("%d answers read, %d requests served", len(g.lat), served.Load())
	}
	if int64(g.failed) != failedByServer.Load() {
		t.Fatalf("%d failures counted, the server failed %d", g.failed, failedByServer.Load())
	}
	for _, l := range g.lat {
		if l <= 0 {
			t.Fatalf("latency %d ns: not after the arrival", l)
		}
	}
	fields := strings.Fields(g.summary(200 * time.Millisecond))
	if len(fields) != 7 {
		t.Fatalf("summary %q: want 7 fields", fields)
	}
}
