package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/safekit-oss/safekit/runtime/module"
)

// opBudget is how long each run of a round-trip measurement lasts.
const opBudget = 250 * time.Millisecond

// minLogEntries is how full the module log is before `log -s 300` is timed.
const minLogEntries = 1000

// benchModule is the module the round trips go to.
const benchModule = "b1"

// measureState times `safekit state` on a started light module, through
// the local API and through the CLI process.
func measureState(ctx context.Context, n *node, runs int) ([]row, error) {
	if err := n.addLightModule(ctx, benchModule, 1); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return measureOps(ctx, runs, []opCase{
		{"state, API", "GET /v1/modules/b1/state", func() error {
			_, err := n.call(ctx, http.MethodGet, "/v1/modules/"+benchModule+"/state", nil)
			return err
		}},
		{"state, CLI", "safekit state -m b1", func() error {
			_, err := n.cli(ctx, "state", "-m", benchModule)
			return err
		}},
	})
}

// measureLog times appends to the module log and reads of its last 300
// entries, through the local API and through the CLI process.
func measureLog(ctx context.Context, n *node, runs int) ([]row, error) {
	printReq, err := json.Marshal(module.PrintRequest{Level: "I", Msg: "benchreport: a line of the module log"})
	if err != nil {
		return nil, err
	}
	rows, err := measureOps(ctx, runs, []opCase{
		{"log append, API", "POST /v1/modules/b1/print", func() error {
			_, err := n.call(ctx, http.MethodPost, "/v1/modules/"+benchModule+"/print", printReq)
			return err
		}},
		{"log append, CLI", "safekit printi -m b1 msg", func() error {
			_, err := n.cli(ctx, "printi", "-m", benchModule, "benchreport: a line of the module log")
			return err
		}},
	})
	if err != nil {
		return rows, err
	}
	if err := fillLog(ctx, n, printReq); err != nil {
		return rows, err
	}
	more, err := measureOps(ctx, runs, []opCase{
		{"log -s 300 read, API", "GET /v1/modules/b1/log?n=300&verbose=1", func() error {
			_, err := n.call(ctx, http.MethodGet, "/v1/modules/"+benchModule+"/log?n=300&verbose=1", nil)
			return err
		}},
		{"log -s 300 read, CLI", "safekit log -m b1 -s 300 -A", func() error {
			_, err := n.cli(ctx, "log", "-m", benchModule, "-s", "300", "-A")
			return err
		}},
	})
	return append(rows, more...), err
}

// fillLog appends entries until the module log holds minLogEntries.
func fillLog(ctx context.Context, n *node, printReq []byte) error {
	data, err := n.call(ctx, http.MethodGet, fmt.Sprintf("/v1/modules/%s/log?n=%d&verbose=1", benchModule, minLogEntries), nil)
	if err != nil {
		return fmt.Errorf("fill the log: %w", err)
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(data, &entries); err != nil {
		return fmt.Errorf("fill the log: %w", err)
	}
	for range minLogEntries - len(entries) {
		if _, err := n.call(ctx, http.MethodPost, "/v1/modules/"+benchModule+"/print", printReq); err != nil {
			return fmt.Errorf("fill the log: %w", err)
		}
	}
	return nil
}

// opCase is one round trip to time; what says what it sends.
type opCase struct {
	name, what string
	op         func() error
}

// measureOps reports each case in operations per second. These figures
// have no target.
func measureOps(ctx context.Context, runs int, cases []opCase) ([]row, error) {
	var rows []row
	for _, c := range cases {
		d, err := medianPerOp(ctx, runs, opBudget, c.op)
		if err != nil {
			return rows, fmt.Errorf("%s: %w", c.name, err)
		}
		rows = append(rows, row{
			name:    c.name,
			result:  fmt.Sprintf("%.0f ops/s (%s/op; %s)", float64(time.Second)/float64(d), ms(d), c.what),
			target:  "none",
			verdict: "-",
		})
	}
	return rows, nil
}
