package safe

import (
	"fmt"
	"strconv"
	"time"
)

// Time values (User's Guide 8.2 §13.1): a decimal integer, optionally
// followed by one of the units d, h, m, s, ms, us. A bare number is in the
// attribute's implicit unit. A value in another unit is converted to the
// implicit unit, truncating toward zero (1500ms for a seconds attribute is
// 1 s); a non-zero value that becomes 0 is refused with the guide's message.
// Fractions, signs, blanks and upper-case units are refused: the guide shows
// none, and guessing would hide typos.

var timeUnits = []struct {
	suffix string
	d      time.Duration
}{
	// Longest suffixes first so that "ms" is not read as "m".
	{"ms", time.Millisecond},
	{"us", time.Microsecond},
	{"d", 24 * time.Hour},
	{"h", time.Hour},
	{"m", time.Minute},
	{"s", time.Second},
}

func unitName(d time.Duration) string {
	for _, u := range timeUnits {
		if u.d == d {
			return u.suffix
		}
	}
	return d.String()
}

// parseTime converts v, for the attribute attr whose implicit unit is unit.
// The result is a whole number of units.
func parseTime(attr, v string, unit time.Duration) (time.Duration, error) {
	num, suffix := v, ""
	for _, u := range timeUnits {
		if len(v) > len(u.suffix) && v[len(v)-len(u.suffix):] == u.suffix {
			num, suffix = v[:len(v)-len(u.suffix)], u.suffix
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 63)
	if err != nil || num == "" || num[0] == '+' {
		return 0, fmt.Errorf("invalid value '%s' for the attribute %s (expected a whole number with an optional unit d, h, m, s, ms or us; a bare number is in '%s')", v, attr, unitName(unit))
	}
	given := unit
	for _, u := range timeUnits {
		if u.suffix == suffix {
			given = u.d
		}
	}
	// Work in whole units of the smaller of the two so that nothing
	// overflows for sane values, then truncate to the implicit unit.
	if n > uint64((1<<62)/int64(given)) {
		return 0, fmt.Errorf("invalid value '%s' for the attribute %s (too large)", v, attr)
	}
	total := time.Duration(n) * given
	units := total / unit
	if units == 0 && n != 0 {
		return 0, fmt.Errorf("invalid value '%s' for the attribute %s (expected time unit: '%s')", v, attr, unitName(unit))
	}
	return units * unit, nil
}
