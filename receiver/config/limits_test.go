package config

import (
	"strings"
	"testing"
	"time"
)

func TestServerLimitsDefaultAndValidate(t *testing.T) {
	base := `{"source":"ns/n","authentication":{"mode":"None"},"targets":[{"name":"t","http":{"url":"http://sink:8080/"}}]`
	c, err := Parse([]byte(base + `}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.MaxHeaderBytes != DefaultMaxHeaderBytes || c.Limits.WriteTimeout.Duration != DefaultWriteTimeout ||
		c.Limits.ReadHeaderTimeout.Duration != DefaultReadHeaderTime || c.Limits.IdleTimeout.Duration != DefaultIdleTimeout {
		t.Fatalf("defaults not filled: %+v", c.Limits)
	}
	for body, field := range map[string]string{
		`,"limits":{"maxHeaderBytes":100}}`:                           "limits.maxHeaderBytes",
		`,"limits":{"writeTimeout":"2s"},"delivery":{"budget":"3s"}}`: "limits.writeTimeout",
		`,"limits":{"readTimeout":"-1s"}}`:                            "limits.readTimeout",
	} {
		_, err := Parse([]byte(base + body))
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: got %v, want an error naming %s", body, err, field)
		}
	}
	c.Limits.WriteTimeout = D(4 * time.Second)
	if err := c.Validate(); err != nil {
		t.Fatalf("write timeout above the budget refused: %v", err)
	}
}
