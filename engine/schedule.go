package engine

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// Schedule is a plan's `schedule:`: when `planrun schedule install` has
// systemd or cron start the plan. Exactly one of OnCalendar and Cron is
// set; each can be rendered for the other backend where the two can say
// the same thing.
type Schedule struct {
	OnCalendar      string // systemd calendar syntax, as written
	Cron            string // a 5-field cron expression or @daily etc., as written
	RandomizedDelay time.Duration
	// Persistent catches up a start missed while the machine was off
	// (systemd's Persistent=true; cron cannot).
	Persistent bool
	Line, Col  int

	cal calendar
}

// OnCalendars returns the timer's OnCalendar= values: the on_calendar text
// as written, or the cron expression translated (two values when it
// restricts both day of month and weekday, which cron ORs).
func (s *Schedule) OnCalendars() []string {
	if s.OnCalendar != "" {
		return []string{s.OnCalendar}
	}
	c := s.cal
	if c.domOrDow {
		days, wdays := c, c
		days.weekdays = allWeekdays
		wdays.days = fullMask(1, 31)
		return []string{days.systemd(), wdays.systemd()}
	}
	return []string{c.systemd()}
}

// CronTime returns the five time fields of a cron line: the cron text as
// written, or on_calendar translated when cron can express it.
func (s *Schedule) CronTime() (string, error) {
	if s.Cron != "" {
		return strings.Join(strings.Fields(s.Cron), " "), nil
	}
	return s.cal.cron()
}

// calendar is a schedule as the set of values each field allows (bit v
// set: value v allowed).
type calendar struct {
	weekdays                              uint8 // bit 0: Sunday
	anyYear                               bool
	months, days, hours, minutes, seconds uint64
	domOrDow                              bool // cron: both restricted, either matches
}

const allWeekdays = 0x7f

func fullMask(lo, hi int) uint64 { return (^uint64(0) >> (63 - hi)) &^ (1<<lo - 1) }

var calendarShorthands = map[string]string{
	"minutely": "*-*-* *:*:00", "hourly": "*-*-* *:00:00", "daily": "*-*-* 00:00:00",
	"monthly": "*-*-01 00:00:00", "weekly": "Mon *-*-* 00:00:00", "yearly": "*-01-01 00:00:00",
	"annually": "*-01-01 00:00:00", "quarterly": "*-01,04,07,10-01 00:00:00",
	"semiannually": "*-01,07-01 00:00:00",
}

var weekdayNames = []string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

var weekdayLong = map[string]int{"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3,
	"thursday": 4, "friday": 5, "saturday": 6}

// parseOnCalendar checks text against systemd's calendar event grammar
// (systemd.time(7)): [WEEKDAYS] [[YEAR-]MONTH-DAY] [HOUR:MINUTE[:SECOND]],
// each field a comma list of *, N, N..M, N/STEP or N..M/STEP, or one of
// the shorthands (daily, weekly, ...). It accepts a subset: no ~ (last
// days of a month), fractional seconds or time zones, so that what it
// accepts systemd accepts and cron can mostly say too.
func parseOnCalendar(text string) (calendar, error) {
	if text == "" {
		return calendar{}, errors.New("empty calendar expression")
	}
	if s, ok := calendarShorthands[strings.ToLower(text)]; ok {
		text = s
	}
	c := calendar{weekdays: allWeekdays, anyYear: true, months: fullMask(1, 12), days: fullMask(1, 31)}
	toks := strings.Split(text, " ")
	i := 0
	if i < len(toks) && toks[i] != "" && isLetter(toks[i][0]) {
		w, err := parseWeekdays(toks[i])
		if err != nil {
			return c, err
		}
		c.weekdays, i = w, i+1
	}
	dateSet, timeSet := false, false
	for ; i < len(toks); i++ {
		t := toks[i]
		var err error
		switch {
		case t == "":
			return c, errors.New("separate the parts with single spaces")
		case strings.Contains(t, "~"):
			return c, fmt.Errorf("%q: ~ (days from the end of the month) is not supported", t)
		case !dateSet && !timeSet && strings.Contains(t, "-"):
			err, dateSet = c.parseDate(t), true
		case !timeSet && strings.Contains(t, ":"):
			err, timeSet = c.parseTime(t), true
		case isLetter(t[0]):
			return c, fmt.Errorf("%q: time zones are not supported (schedules use the host's local time)", t)
		default:
			return c, fmt.Errorf("%q: expected [WEEKDAYS] [YEAR-MONTH-DAY] [HOUR:MINUTE[:SECOND]], e.g. *-*-* 03:00:00", t)
		}
		if err != nil {
			return c, err
		}
	}
	if !timeSet {
		c.hours, c.minutes, c.seconds = 1, 1, 1
	}
	return c, nil
}

func isLetter(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }

func parseWeekdays(s string) (uint8, error) {
	var set uint8
	day := func(name string) (int, error) {
		for i, n := range weekdayNames {
			if strings.EqualFold(name, n) {
				return i, nil
			}
		}
		if i, ok := weekdayLong[strings.ToLower(name)]; ok {
			return i, nil
		}
		return 0, fmt.Errorf("%q is not a weekday (Mon, Tue, ... or Monday, ...)", name)
	}
	for item := range strings.SplitSeq(s, ",") {
		a, b, isRange := strings.Cut(item, "..")
		from, err := day(a)
		if err != nil {
			return 0, err
		}
		to := from
		if isRange {
			if to, err = day(b); err != nil {
				return 0, err
			}
		}
		// Ranges run Monday to Sunday, as in systemd (Sat..Sun is valid).
		mon := func(d int) int { return (d + 6) % 7 }
		if mon(to) < mon(from) {
			return 0, fmt.Errorf("weekday range %q runs backwards (the week starts on Monday)", item)
		}
		for d := mon(from); d <= mon(to); d++ {
			set |= 1 << ((d + 1) % 7)
		}
	}
	return set, nil
}

func (c *calendar) parseDate(s string) error {
	parts := strings.Split(s, "-")
	if len(parts) == 3 {
		if parts[0] != "*" {
			if _, err := parseField(parts[0], 1970, 2199, "year"); err != nil {
				return err
			}
			c.anyYear = false
		}
		parts = parts[1:]
	}
	if len(parts) != 2 {
		return fmt.Errorf("%q: a date is YEAR-MONTH-DAY or MONTH-DAY", s)
	}
	var err error
	if c.months, err = parseField(parts[0], 1, 12, "month"); err != nil {
		return err
	}
	c.days, err = parseField(parts[1], 1, 31, "day")
	return err
}

func (c *calendar) parseTime(s string) error {
	parts := strings.Split(s, ":")
	if len(parts) == 2 {
		parts = append(parts, "00")
	}
	if len(parts) != 3 {
		return fmt.Errorf("%q: a time is HOUR:MINUTE or HOUR:MINUTE:SECOND", s)
	}
	var err error
	if c.hours, err = parseField(parts[0], 0, 23, "hour"); err != nil {
		return err
	}
	if c.minutes, err = parseField(parts[1], 0, 59, "minute"); err != nil {
		return err
	}
	c.seconds, err = parseField(parts[2], 0, 59, "second")
	return err
}

// parseField reads one systemd calendar field: a comma list of *, N,
// N..M, N/STEP, N..M/STEP. Years (hi > 63) are checked, not collected.
func parseField(s string, lo, hi int, name string) (uint64, error) {
	var set uint64
	for item := range strings.SplitSeq(s, ",") {
		if item == "*" {
			set |= fullMask(lo, min(hi, 63))
			continue
		}
		if strings.HasPrefix(item, "*/") {
			return 0, fmt.Errorf("%s %q: systemd wants %d/STEP, not */STEP", name, item, lo)
		}
		rng, stepText, hasStep := strings.Cut(item, "/")
		a, b, isRange := strings.Cut(rng, "..")
		from, err := fieldNumber(a, lo, hi, name)
		if err != nil {
			return 0, err
		}
		to, step := hi, 1
		if isRange {
			if to, err = fieldNumber(b, lo, hi, name); err != nil {
				return 0, err
			}
			if to < from {
				return 0, fmt.Errorf("%s range %q runs backwards", name, item)
			}
		} else if !hasStep {
			to = from
		}
		if hasStep {
			if step, err = strconv.Atoi(stepText); err != nil || step < 1 {
				return 0, fmt.Errorf("%s %q: the step after / must be a whole number ≥ 1", name, item)
			}
		}
		for v := from; v <= to && hi <= 63; v += step {
			set |= 1 << v
		}
	}
	return set, nil
}

func fieldNumber(s string, lo, hi int, name string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || s == "" || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("%s %q: expected a number from %d to %d", name, s, lo, hi)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%s %d is out of range (%d-%d)", name, n, lo, hi)
	}
	return n, nil
}

var cronShorthands = map[string]string{
	"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
	"@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *",
}

var monthNames = []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}

// parseCron checks a 5-field cron expression as Debian's cron reads it
// (crontab(5)): minute hour day-of-month month day-of-week, each a comma
// list of *, N, N-M, */STEP or N-M/STEP, or one month or weekday name; or
// a shorthand such as @daily.
func parseCron(text string) (calendar, error) {
	c := calendar{anyYear: true, seconds: 1}
	if strings.ContainsAny(text, "\n\r") {
		return c, errors.New("a cron expression is one line")
	}
	if strings.HasPrefix(text, "@") {
		s, ok := cronShorthands[strings.ToLower(text)]
		if !ok {
			return c, fmt.Errorf("%q: unknown shorthand (known: @hourly, @daily, @weekly, @monthly, @yearly)", text)
		}
		text = s
	}
	f := strings.Fields(text)
	if len(f) != 5 {
		return c, fmt.Errorf("expected 5 fields (minute hour day-of-month month day-of-week), got %d", len(f))
	}
	var err error
	if c.minutes, err = cronField(f[0], 0, 59, "minute", nil); err != nil {
		return c, err
	}
	if c.hours, err = cronField(f[1], 0, 23, "hour", nil); err != nil {
		return c, err
	}
	if c.days, err = cronField(f[2], 1, 31, "day of month", nil); err != nil {
		return c, err
	}
	if c.months, err = cronField(f[3], 1, 12, "month", monthNames); err != nil { // jan is 1
		return c, err
	}
	wd, err := cronField(f[4], 0, 7, "day of week", weekdayNames)
	if err != nil {
		return c, err
	}
	c.weekdays = uint8(wd&allWeekdays | wd>>7) // 7 is Sunday too
	// cron runs when either day field matches if neither starts with *
	// (*/2 counts as a star, as in cron's own code).
	c.domOrDow = !strings.HasPrefix(f[2], "*") && !strings.HasPrefix(f[4], "*")
	return c, nil
}

func cronField(s string, lo, hi int, name string, names []string) (uint64, error) {
	for i, n := range names { // one name, as crontab(5) allows
		if strings.EqualFold(s, n) {
			return 1 << (lo + i), nil
		}
	}
	var set uint64
	for item := range strings.SplitSeq(s, ",") {
		rng, stepText, hasStep := strings.Cut(item, "/")
		from, to, step := lo, hi, 1
		if rng != "*" {
			a, b, isRange := strings.Cut(rng, "-")
			var err error
			if from, err = fieldNumber(a, lo, hi, name); err != nil {
				return 0, err
			}
			to = from
			if isRange {
				if to, err = fieldNumber(b, lo, hi, name); err != nil {
					return 0, err
				}
				if to < from {
					return 0, fmt.Errorf("%s range %q runs backwards", name, item)
				}
			} else if hasStep {
				return 0, fmt.Errorf("%s %q: cron wants */STEP or N-M/STEP", name, item)
			}
		}
		if hasStep {
			var err error
			if step, err = strconv.Atoi(stepText); err != nil || step < 1 {
				return 0, fmt.Errorf("%s %q: the step after / must be a whole number ≥ 1", name, item)
			}
		}
		for v := from; v <= to; v += step {
			set |= 1 << v
		}
	}
	return set, nil
}

// systemd renders c as one OnCalendar value.
func (c calendar) systemd() string {
	var b strings.Builder
	if c.weekdays != allWeekdays {
		var names []string
		for _, r := range runs(uint64(c.weekdays>>1|c.weekdays<<6)&allWeekdays, 0, 6) { // Monday first
			a, z := weekdayNames[(r[0]+1)%7], weekdayNames[(r[1]+1)%7]
			switch {
			case r[0] == r[1]:
				names = append(names, a)
			case r[1] == r[0]+1:
				names = append(names, a, z)
			default:
				names = append(names, a+".."+z)
			}
		}
		b.WriteString(strings.Join(names, ",") + " ")
	}
	fmt.Fprintf(&b, "*-%s-%s %s:%s:%s", field(c.months, 1, 12, "..", false), field(c.days, 1, 31, "..", false),
		field(c.hours, 0, 23, "..", false), field(c.minutes, 0, 59, "..", false), field(c.seconds, 0, 59, "..", false))
	return b.String()
}

// cron renders c as five cron fields, or says why cron cannot.
func (c calendar) cron() (string, error) {
	switch {
	case !c.anyYear:
		return "", errors.New("cron cannot restrict the year: use the systemd backend")
	case c.seconds != 1:
		return "", errors.New("cron starts on whole minutes only (seconds must be 00): use the systemd backend")
	case c.weekdays != allWeekdays && c.days != fullMask(1, 31):
		return "", errors.New("cron runs when either the day of month or the weekday matches, not both: use the systemd backend")
	}
	return strings.Join([]string{field(c.minutes, 0, 59, "-", true), field(c.hours, 0, 23, "-", true),
		field(c.days, 1, 31, "-", true), field(c.months, 1, 12, "-", true), field(uint64(c.weekdays), 0, 6, "-", true)}, " "), nil
}

// field renders a value set: * when full, START/STEP when it is every
// STEPth value from START to the end, else a list with ranges.
func field(set uint64, lo, hi int, rangeSep string, cron bool) string {
	if set == fullMask(lo, hi) {
		return "*"
	}
	num := func(v int) string {
		if cron {
			return strconv.Itoa(v)
		}
		return fmt.Sprintf("%02d", v)
	}
	if n := bits.OnesCount64(set); n >= 3 {
		first := bits.TrailingZeros64(set)
		step := bits.TrailingZeros64(set>>(first+1)) + 1
		var prog uint64
		for v := first; v <= hi; v += step {
			prog |= 1 << v
		}
		if prog == set && step > 1 {
			switch {
			case !cron:
				return num(first) + "/" + strconv.Itoa(step)
			case first == lo:
				return "*/" + strconv.Itoa(step)
			default:
				return fmt.Sprintf("%d-%d/%d", first, hi, step)
			}
		}
	}
	var items []string
	for _, r := range runs(set, lo, hi) {
		switch {
		case r[0] == r[1]:
			items = append(items, num(r[0]))
		case r[1] == r[0]+1:
			items = append(items, num(r[0]), num(r[1]))
		default:
			items = append(items, num(r[0])+rangeSep+num(r[1]))
		}
	}
	return strings.Join(items, ",")
}

// runs splits a set into runs of consecutive values.
func runs(set uint64, lo, hi int) [][2]int {
	var out [][2]int
	for v := lo; v <= hi; v++ {
		if set&(1<<v) == 0 {
			continue
		}
		start := v
		for v+1 <= hi && set&(1<<(v+1)) != 0 {
			v++
		}
		out = append(out, [2]int{start, v})
	}
	return out
}
