package retention

import (
	"strings"
	"testing"
	"time"
)

func TestTimeFromName(t *testing.T) {
	local := time.FixedZone("X", 3600)
	cases := []struct {
		name string
		want time.Time
		ok   bool
	}{
		{"configs-20240102T030405Z.tar.zst", time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), true},
		{"mongo-2024-01-02.archive.gz", time.Date(2024, 1, 2, 0, 0, 0, 0, local), true},
		{"pg-2024-01-02_03-04-05.dump", time.Date(2024, 1, 2, 3, 4, 5, 0, local), true},
		{"pg-2024-01-02T03:04.dump", time.Date(2024, 1, 2, 3, 4, 0, 0, local), true},
		{"app-20241231.sql.zst", time.Date(2024, 12, 31, 0, 0, 0, 0, local), true},
		{"build-1234-20240230.tar", time.Time{}, false}, // Feb 30 is no date
		{"v1-99999999-20240301.tar", time.Date(2024, 3, 1, 0, 0, 0, 0, local), true},
		{"backup.tar.zst", time.Time{}, false},
		// an invalid time part (a pid or sequence number) leaves the date alone
		{"app-20240102-2500.dump", time.Date(2024, 1, 2, 0, 0, 0, 0, local), true},
		{"app-20240102-2500-7.dump", time.Date(2024, 1, 2, 0, 0, 0, 0, local), true},
		// digits glued before the stamp are not a date start
		{"id120240102.tar", time.Time{}, false},
	}
	for _, c := range cases {
		got, ok := TimeFromName(c.name, local)
		if ok != c.ok || !got.Equal(c.want) {
			t.Errorf("TimeFromName(%q) = %v, %v; want %v, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

func days(n int, end time.Time) []Item {
	var out []Item
	for i := 0; i < n; i++ {
		tm := end.AddDate(0, 0, -i)
		out = append(out, Item{Name: tm.Format("20060102"), Time: tm})
	}
	return out
}

func kept(ds []Decision) []string {
	var out []string
	for _, d := range ds {
		if d.Keep {
			out = append(out, d.Name)
		}
	}
	return out
}

func TestMaxAge(t *testing.T) {
	now := time.Date(2024, 6, 30, 12, 0, 0, 0, time.UTC)
	ds := Apply(days(40, now.Add(-time.Hour)), Policy{MaxAge: 10 * 24 * time.Hour}, now)
	got := kept(ds)
	if len(got) != 10 || got[0] != "20240630" || got[9] != "20240621" {
		t.Fatalf("max_age 10d kept %v", got)
	}
	// max_age overrides keep rules.
	ds = Apply(days(40, now.Add(-time.Hour)), Policy{Monthly: 12, MaxAge: 5 * 24 * time.Hour}, now)
	for _, d := range ds {
		if d.Keep && d.Time.Before(now.AddDate(0, 0, -5)) {
			t.Errorf("kept %s older than max_age: %v", d.Name, d.Reasons)
		}
	}
}

func TestNewestNeverDeleted(t *testing.T) {
	now := time.Date(2024, 6, 30, 0, 0, 0, 0, time.UTC)
	items := days(5, now.AddDate(0, 0, -100))
	ds := Apply(items, Policy{MaxAge: 24 * time.Hour}, now)
	got := kept(ds)
	if len(got) != 1 || got[0] != items[0].Name {
		t.Fatalf("kept %v, want only the newest %s", got, items[0].Name)
	}
	if !strings.Contains(strings.Join(ds[0].Reasons, ","), "newest") {
		t.Errorf("reason for keeping the newest: %v", ds[0].Reasons)
	}
	if ds[1].Keep || !strings.Contains(ds[1].Reasons[0], "max_age") {
		t.Errorf("second: %+v", ds[1])
	}
}

func TestKeepLastAndReasons(t *testing.T) {
	now := time.Date(2024, 6, 30, 0, 0, 0, 0, time.UTC)
	ds := Apply(days(10, now), Policy{Last: 3}, now)
	if got := kept(ds); len(got) != 3 || got[2] != "20240628" {
		t.Fatalf("keep_last 3 kept %v", got)
	}
	if ds[0].Reasons[0] != "last" || ds[5].Reasons[0] != "matched no keep rule" {
		t.Errorf("reasons: %v / %v", ds[0].Reasons, ds[5].Reasons)
	}
}
