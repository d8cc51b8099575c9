package safe

import (
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	const syntax = "(expected a whole number with an optional unit d, h, m, s, ms or us; a bare number is in 's')"
	tests := []struct {
		v    string
		unit time.Duration
		want time.Duration
		err  string
	}{
		// A bare number is in the implicit unit.
		{v: "24", unit: time.Hour, want: 24 * time.Hour},
		{v: "30000", unit: time.Millisecond, want: 30 * time.Second},
		{v: "0", unit: time.Second, want: 0},
		// Another unit is converted, truncating toward zero.
		{v: "700ms", unit: time.Millisecond, want: 700 * time.Millisecond},
		{v: "1500ms", unit: time.Second, want: time.Second},
		{v: "90m", unit: time.Hour, want: time.Hour},
		{v: "2d", unit: time.Hour, want: 48 * time.Hour},
		{v: "1h", unit: time.Millisecond, want: time.Hour},
		{v: "0ms", unit: time.Second, want: 0},
		// ...but a non-zero value may not become 0 (User's Guide §13.1.2).
		{v: "500ms", unit: time.Second, err: "invalid value '500ms' for the attribute boot_delay (expected time unit: 's')"},
		{v: "999us", unit: time.Millisecond, err: "invalid value '999us' for the attribute boot_delay (expected time unit: 'ms')"},
		{v: "59m", unit: time.Hour, err: "invalid value '59m' for the attribute boot_delay (expected time unit: 'h')"},
		// Nothing but digits and one lower-case unit.
		{v: "1.5s", unit: time.Second, err: "invalid value '1.5s' for the attribute boot_delay " + syntax},
		{v: " 5s", unit: time.Second, err: "invalid value ' 5s' for the attribute boot_delay " + syntax},
		{v: "5s ", unit: time.Second, err: "invalid value '5s ' for the attribute boot_delay " + syntax},
		{v: "5 s", unit: time.Second, err: "invalid value '5 s' for the attribute boot_delay " + syntax},
		{v: "5S", unit: time.Second, err: "invalid value '5S' for the attribute boot_delay " + syntax},
		{v: "-1", unit: time.Second, err: "invalid value '-1' for the attribute boot_delay " + syntax},
		{v: "+5", unit: time.Second, err: "invalid value '+5' for the attribute boot_delay " + syntax},
		{v: "", unit: time.Second, err: "invalid value '' for the attribute boot_delay " + syntax},
		{v: "ms", unit: time.Second, err: "invalid value 'ms' for the attribute boot_delay " + syntax},
		{v: "5sec", unit: time.Second, err: "invalid value '5sec' for the attribute boot_delay " + syntax},
		{v: "999999999999d", unit: time.Second, err: "invalid value '999999999999d' for the attribute boot_delay (too large)"},
	}
	for _, tt := range tests {
		got, err := parseTime("boot_delay", tt.v, tt.unit)
		switch {
		case tt.err != "":
			if err == nil || err.Error() != tt.err {
				t.Errorf("parseTime(%q, %v) = %v, %v; want error %q", tt.v, tt.unit, got, err, tt.err)
			}
		case err != nil || got != tt.want:
			t.Errorf("parseTime(%q, %v) = %v, %v; want %v", tt.v, tt.unit, got, err, tt.want)
		}
	}
}

func TestDurationText(t *testing.T) {
	tests := []struct {
		d    time.Duration
		text string
	}{
		{0, "0s"},
		{700 * time.Millisecond, "700ms"},
		{30 * time.Second, "30s"},
		{90 * time.Minute, "90m"},
		{24 * time.Hour, "1d"},
		{1500 * time.Microsecond, "1500us"},
	}
	for _, tt := range tests {
		b, err := Duration(tt.d).MarshalText()
		if err != nil || string(b) != tt.text {
			t.Errorf("Duration(%v).MarshalText() = %q, %v; want %q", tt.d, b, err, tt.text)
		}
		var back Duration
		if err := back.UnmarshalText(b); err != nil || back.D() != tt.d {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", b, back.D(), err, tt.d)
		}
	}
}
