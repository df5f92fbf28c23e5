// Package retention decides which artifacts a GFS policy keeps. The keep_*
// rules follow restic's `forget` policy (as of restic 0.14, the version the
// tests compare against): artifacts are walked newest first, and each rule
// keeps the first artifact of every new period (hour, day, ISO week,
// month, year) until its count is used up; an artifact is kept if any rule
// keeps it.
package retention

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Policy is a retention policy. Zero counts are unset; -1 means "all".
type Policy struct {
	Last, Hourly, Daily, Weekly, Monthly, Yearly int
	// MaxAge, when set, deletes artifacts older than now-MaxAge whatever
	// the keep rules say (except the newest artifact, which is never deleted).
	MaxAge time.Duration
}

// Empty reports whether no rule is set.
func (p Policy) Empty() bool {
	return p.Last == 0 && p.Hourly == 0 && p.Daily == 0 && p.Weekly == 0 &&
		p.Monthly == 0 && p.Yearly == 0 && p.MaxAge == 0
}

func (p Policy) hasKeepRules() bool {
	return p.Last != 0 || p.Hourly != 0 || p.Daily != 0 || p.Weekly != 0 || p.Monthly != 0 || p.Yearly != 0
}

// Item is one artifact and the time it was made.
type Item struct {
	Name string
	Time time.Time
}

// Decision is the verdict on one item, with the reasons.
type Decision struct {
	Item
	Keep    bool
	Reasons []string
}

func (d Decision) String() string {
	verb := "delete"
	if d.Keep {
		verb = "keep"
	}
	return fmt.Sprintf("%s %s (%s; %s)", verb, d.Name, d.Time.Format(time.RFC3339), strings.Join(d.Reasons, ", "))
}

// Apply decides for every item; the result is sorted newest first.
func Apply(items []Item, p Policy, now time.Time) []Decision {
	list := append([]Item(nil), items...)
	sort.SliceStable(list, func(i, j int) bool {
		if !list[i].Time.Equal(list[j].Time) {
			return list[i].Time.After(list[j].Time)
		}
		return list[i].Name > list[j].Name
	})
	type bucket struct {
		count  int
		key    func(t time.Time, nr int) int
		last   int
		reason string
	}
	buckets := []bucket{
		{p.Last, func(_ time.Time, nr int) int { return nr }, -1, "last"},
		{p.Hourly, func(t time.Time, _ int) int { return t.Year()*1000000 + int(t.Month())*10000 + t.Day()*100 + t.Hour() }, -1, "hourly"},
		{p.Daily, func(t time.Time, _ int) int { return t.Year()*10000 + int(t.Month())*100 + t.Day() }, -1, "daily"},
		{p.Weekly, func(t time.Time, _ int) int { y, w := t.ISOWeek(); return y*100 + w }, -1, "weekly"},
		{p.Monthly, func(t time.Time, _ int) int { return t.Year()*100 + int(t.Month()) }, -1, "monthly"},
		{p.Yearly, func(t time.Time, _ int) int { return t.Year() }, -1, "yearly"},
	}
	out := make([]Decision, len(list))
	for nr, it := range list {
		d := Decision{Item: it}
		if !p.hasKeepRules() {
			d.Keep, d.Reasons = true, []string{"within max_age"}
		}
		for i := range buckets {
			b := &buckets[i]
			if b.count == 0 {
				continue
			}
			if v := b.key(it.Time, nr); v != b.last {
				b.last = v
				if b.count > 0 {
					b.count--
				}
				d.Keep = true
				d.Reasons = append(d.Reasons, b.reason)
			}
		}
		if p.MaxAge > 0 && it.Time.Before(now.Add(-p.MaxAge)) {
			d.Keep = false
			d.Reasons = []string{"older than max_age " + p.MaxAge.String()}
		}
		if !d.Keep && len(d.Reasons) == 0 {
			d.Reasons = []string{"matched no keep rule"}
		}
		out[nr] = d
	}
	if len(out) > 0 && !out[0].Keep {
		out[0].Keep = true
		out[0].Reasons = append(out[0].Reasons, "newest artifact is never deleted")
	}
	return out
}
