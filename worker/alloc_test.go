package worker

import (
	"reflect"
	"testing"

	"github.com/gdirty/gdirty/compat"
)

// The allocation gunicorn documents (docs/content/dirty.md, "Worker
// Distribution"): 4 workers, LightApp on all, HeavyModelApp on 2,
// SingletonApp on 1.
func TestAppsForNewWorkerMatchesGunicornDistribution(t *testing.T) {
	specs := []compat.AppSpec{
		{ImportPath: "m:Light"},
		{ImportPath: "m:Heavy", Workers: 2},
		{ImportPath: "m:Single", Workers: 1},
	}
	want := [][]string{
		{"m:Light", "m:Heavy", "m:Single"},
		{"m:Light", "m:Heavy"},
		{"m:Light"},
		{"m:Light"},
	}
	counts := map[string]int{}
	for i, w := range want {
		got := appsForNewWorker(specs, counts)
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("worker %d: got %v, want %v", i+1, got, w)
		}
		for _, a := range got {
			counts[a]++
		}
	}
}

func TestAppsForNewWorkerAllLimitedAndFull(t *testing.T) {
	specs := []compat.AppSpec{{ImportPath: "m:A", Workers: 1}}
	if got := appsForNewWorker(specs, map[string]int{"m:A": 1}); len(got) != 0 {
		t.Fatalf("got %v, want no apps (no worker needed)", got)
	}
}

func TestMinimumWorkers(t *testing.T) {
	tests := []struct {
		specs []compat.AppSpec
		want  int
	}{
		{nil, 1},
		{[]compat.AppSpec{{ImportPath: "a:A"}}, 1},
		{[]compat.AppSpec{{ImportPath: "a:A", Workers: 3}, {ImportPath: "b:B", Workers: 2}}, 3},
	}
	for _, tc := range tests {
		if got := minimumWorkers(tc.specs); got != tc.want {
			t.Errorf("minimumWorkers(%v) = %d, want %d", tc.specs, got, tc.want)
		}
	}
}
