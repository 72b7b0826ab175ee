package receiver

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// fieldDropper removes dotted paths from events. It edits the raw bytes in place of decoding and
// re-encoding, so everything it does not drop reaches the target byte for byte (key order,
// number formatting and escapes included).
type fieldDropper struct {
	paths [][]string
	// The top-level fields dropped that an Event also carries beside its bytes: cleared too, so
	// that no key or header (Kafka key, ce-subject, ce-time) gives them to the target.
	userID, anonymousID, timestamp bool
	// messageID: the event's id goes out pseudonymous (see id), still a stable idempotency key.
	messageID bool
}

func newFieldDropper(paths []string) fieldDropper {
	d := fieldDropper{}
	for _, p := range paths {
		d.paths = append(d.paths, strings.Split(p, "."))
		switch p {
		case "userId":
			d.userID = true
		case "anonymousId":
			d.anonymousID = true
		case "timestamp":
			d.timestamp = true
		case "messageId":
			d.messageID = true
		}
	}
	return d
}

// id is the messageId the target gets, and is remembered by: the event's own, or when the target
// drops messageId, a digest of it (the same on every retry and replica, and not the id).
func (d fieldDropper) id(messageID string) string {
	if !d.messageID {
		return messageID
	}
	sum := sha256.Sum256([]byte("swh-dropped\x00" + messageID))
	return "swh-" + hex.EncodeToString(sum[:16])
}

// apply returns the event with the fields removed, from its bytes and from the fields it carries
// (its MessageID is set by the caller, see id). The input is not modified, and an event that has
// none of the fields keeps its received bytes.
func (d fieldDropper) apply(ev Event) (Event, error) {
	raw := ev.Raw
	for _, path := range d.paths {
		out, changed, err := dropField(raw, path)
		if err != nil {
			return ev, err
		}
		if changed {
			raw = out
		}
	}
	ev.Raw = raw
	if d.userID {
		ev.UserID = ""
	}
	if d.anonymousID {
		ev.AnonymousID = ""
	}
	if d.timestamp {
		ev.Timestamp = time.Time{}
	}
	return ev, nil
}

var errNotObject = errors.New("not a JSON object")

// dropField removes the member at path (keys from the outside in) from a JSON object. Paths that
// do not exist, or cross a value that is not an object, leave it unchanged. Every occurrence of a
// duplicated key is removed, since consumers disagree on which one wins.
func dropField(obj []byte, path []string) ([]byte, bool, error) {
	members, err := objectMembers(obj)
	if err != nil {
		return obj, false, err
	}
	changed := false
	for i := range members {
		m := &members[i]
		if m.key != path[0] {
			continue
		}
		if len(path) == 1 {
			m.drop = true
			changed = true
			continue
		}
		value := obj[m.valueStart:m.end]
		if value[0] != '{' {
			continue
		}
		out, ch, err := dropField(value, path[1:])
		if err != nil {
			return obj, false, err
		}
		if ch {
			m.replacement = out
			changed = true
		}
	}
	if !changed {
		return obj, false, nil
	}
	var b bytes.Buffer
	b.Grow(len(obj))
	b.WriteByte('{')
	first := true
	for _, m := range members {
		if m.drop {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		if m.replacement != nil {
			b.Write(obj[m.start:m.valueStart])
			b.Write(m.replacement)
		} else {
			b.Write(obj[m.start:m.end])
		}
	}
	b.WriteByte('}')
	return b.Bytes(), true, nil
}

type member struct {
	key                    string
	start, valueStart, end int // the key's opening quote, the value, the end of the value
	drop                   bool
	replacement            []byte
}

// objectMembers locates each member of a JSON object by the tokenizer's offsets.
func objectMembers(obj []byte) ([]member, error) {
	dec := decoders.Get().(*jsontext.Decoder)
	defer decoders.Put(dec)
	dec.Reset(bytes.NewBuffer(obj), decoderOptions...)
	defer dec.Reset(bytes.NewBuffer(nil))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return nil, errNotObject
	}
	var members []member
	for dec.PeekKind() != '}' {
		name, err := dec.ReadValue()
		if err != nil {
			return nil, err
		}
		start := int(dec.InputOffset()) - len(name)
		key, _ := jsontext.AppendUnquote(nil, name) // validated: at worst invalid UTF-8, replaced
		value, err := dec.ReadValue()
		if err != nil {
			return nil, err
		}
		end := int(dec.InputOffset())
		members = append(members, member{key: string(key), start: start, valueStart: end - len(value), end: end})
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, err
	}
	return members, nil
}
