package worker

import (
	"fmt"
	"regexp"
	"strings"
)

// DefaultDevicesEnv is the variable that tells CUDA which devices a
// process may see.
const DefaultDevicesEnv = "CUDA_VISIBLE_DEVICES"

// DevicePlan places accelerators: worker slot i owns PerWorker consecutive
// device ids, exported to the worker in Env (e.g. CUDA_VISIBLE_DEVICES=2,3).
// A slot belongs to a worker for its whole life and passes to the worker
// that replaces it (crash respawn, recycle, reload), so a model always
// lands on the devices its predecessor used.
type DevicePlan struct {
	IDs       []string
	PerWorker int
	Env       string
	// Shared lets more workers than there are device groups start: slots
	// past the last group wrap around and share devices.
	Shared bool
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Check validates the plan for a pool of workers processes; the error
// says what to change.
func (d *DevicePlan) Check(workers int) error {
	if len(d.IDs) == 0 {
		return fmt.Errorf("no devices given")
	}
	seen := map[string]bool{}
	for _, id := range d.IDs {
		if id == "" || strings.ContainsAny(id, ",\x00") || strings.TrimSpace(id) != id {
			return fmt.Errorf("device id %q: must be non-empty, without commas or surrounding spaces", id)
		}
		if seen[id] {
			return fmt.Errorf("device %q is listed twice", id)
		}
		seen[id] = true
	}
	if d.PerWorker < 1 {
		return fmt.Errorf("devices_per_worker must be >= 1, got %d", d.PerWorker)
	}
	if d.PerWorker > len(d.IDs) {
		return fmt.Errorf("devices_per_worker is %d but only %d devices are given", d.PerWorker, len(d.IDs))
	}
	if !envName.MatchString(d.Env) {
		return fmt.Errorf("devices_env %q is not an environment variable name", d.Env)
	}
	if need := workers * d.PerWorker; need > len(d.IDs) && !d.Shared {
		return fmt.Errorf("%d workers x %d device(s) each need %d devices, only %d given (%s); lower dirty_workers or set devices_shared to share them",
			workers, d.PerWorker, need, len(d.IDs), strings.Join(d.IDs, ","))
	}
	return nil
}

// slots returns how many workers can own devices at once (-1: no limit,
// devices are shared).
func (d *DevicePlan) slots() int {
	if d.Shared {
		return -1
	}
	return len(d.IDs) / d.PerWorker
}

// devices returns the ids owned by slot.
func (d *DevicePlan) devices(slot int) []string {
	out := make([]string, d.PerWorker)
	for j := range out {
		out[j] = d.IDs[(slot*d.PerWorker+j)%len(d.IDs)]
	}
	return out
}

// freeSlotLocked returns the lowest device slot that no staying worker
// owns and no pending respawn reserves (-1 without placement); false when
// every slot is taken.
func (p *Pool) freeSlotLocked() (int, bool) {
	d := p.cfg.Devices
	if d == nil {
		return -1, true
	}
	used := map[int]bool{}
	for _, m := range p.workers {
		if !m.retiring && m.slot >= 0 {
			used[m.slot] = true
		}
	}
	for _, r := range p.respawns {
		used[r.slot] = true
	}
	limit := d.slots()
	for s := 0; limit < 0 || s < limit; s++ {
		if !used[s] {
			return s, true
		}
	}
	return -1, false
}
