// probe is the one program of the kind tests' container image (see ../images.py):
// a static binary that lets a test ask a pod what it sees, with no shell or
// base image. Every subcommand prints its result on stdout and exits non-zero
// with the reason on stderr when it fails.
//
//	probe sleep               wait until SIGTERM
//	probe cat FILE            print a file
//	probe env NAME            print an environment variable (exit 1 if unset)
//	probe lookup NAME         print the addresses NAME resolves to, one a line
//	probe get URL             HTTP GET: print the body (exit 1 unless 200)
//	probe serve PORT TEXT     HTTP server answering every request with TEXT
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: probe sleep|cat FILE|env NAME|lookup NAME|get URL|serve PORT TEXT")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch cmd, args := os.Args[1], os.Args[2:]; {
	case cmd == "sleep" && len(args) == 0:
		<-ctx.Done()
	case cmd == "cat" && len(args) == 1:
		data, err := os.ReadFile(args[0])
		check(err)
		os.Stdout.Write(data)
	case cmd == "env" && len(args) == 1:
		value, ok := os.LookupEnv(args[0])
		if !ok {
			fail(args[0] + " is not set")
		}
		fmt.Println(value)
	case cmd == "lookup" && len(args) == 1:
		lookupCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupHost(lookupCtx, args[0])
		check(err)
		for _, addr := range addrs {
			fmt.Println(addr)
		}
	case cmd == "get" && len(args) == 1:
		client := http.Client{Timeout: 10 * time.Second}
		resp, err := client.Get(args[0])
		check(err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		check(err)
		if resp.StatusCode != http.StatusOK {
			fail(fmt.Sprintf("%s: HTTP %d", args[0], resp.StatusCode))
		}
		os.Stdout.Write(body)
	case cmd == "serve" && len(args) == 2:
		text := args[1]
		server := &http.Server{
			Addr:              ":" + args[0],
			ReadHeaderTimeout: 5 * time.Second,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				io.WriteString(w, text)
			}),
		}
		go func() {
			<-ctx.Done()
			server.Close()
		}()
		if err := server.ListenAndServe(); err != http.ErrServerClosed {
			check(err)
		}
	default:
		fail("unknown command or wrong arguments: " + fmt.Sprint(os.Args[1:]))
	}
}

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(reason string) {
	fmt.Fprintln(os.Stderr, "probe:", reason)
	os.Exit(1)
}
