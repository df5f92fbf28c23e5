package retention

import (
	"regexp"
	"strconv"
	"time"
)

// stampRe finds a date (and optional time) in a file name: 20240102,
// 2024-01-02, 20240102T030405Z, 2024-01-02_03-04-05, 2024-01-02T03:04 ...
var stampRe = regexp.MustCompile(`(\d{4})-?(\d{2})-?(\d{2})(?:[T_ .-]?(\d{2})[:.-]?(\d{2})(?:[:.-]?(\d{2}))?)?(Z)?`)

// TimeFromName returns the first plausible timestamp in name. Stamps with
// a trailing Z are UTC, others are in loc (the host's zone, as restic
// uses for snapshot times).
func TimeFromName(name string, loc *time.Location) (time.Time, bool) {
	// Try every start position: an invalid candidate ("99999999-2024...")
	// must not swallow the real stamp that follows it.
	for i := 0; i < len(name); i++ {
		loc0 := stampRe.FindStringSubmatchIndex(name[i:])
		if loc0 == nil {
			break
		}
		m := make([]string, 8)
		for g := 1; g < 8; g++ {
			if loc0[2*g] >= 0 {
				m[g] = name[i+loc0[2*g] : i+loc0[2*g+1]]
			}
		}
		start := i + loc0[0]
		if start > 0 && isDigit(name[start-1]) {
			// inside a longer number ("120240102..."): not a stamp here
			i = start
			continue
		}
		if t, ok := stampTime(m, loc); ok {
			return t, true
		}
		// An invalid time part ("-2500", a pid or sequence number) must not
		// shift the match onto a made-up date: try the date alone.
		dateEnd := i + loc0[7]
		if m[4] != "" && (dateEnd >= len(name) || !isDigit(name[dateEnd])) {
			d := append([]string(nil), m...)
			d[4], d[5], d[6], d[7] = "", "", "", ""
			if t, ok := stampTime(d, loc); ok {
				return t, true
			}
		}
		i = start // next try starts one past this candidate
	}
	return time.Time{}, false
}

func stampTime(m []string, loc *time.Location) (time.Time, bool) {
	n := func(i int) int {
		v, _ := strconv.Atoi(m[i])
		return v
	}
	y, mo, d, h, mi, s := n(1), n(2), n(3), n(4), n(5), n(6)
	if y < 1970 || y > 2999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60 {
		return time.Time{}, false
	}
	zone := loc
	if m[7] == "Z" {
		zone = time.UTC
	}
	t := time.Date(y, time.Month(mo), d, h, mi, s, 0, zone)
	if t.Day() != d { // 2024-02-31 normalised to March: not a date
		return time.Time{}, false
	}
	return t, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
