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
	paths *pathNode // nil: no paths
	// The top-level fields dropped that an Event also carries beside its bytes: cleared too, so
	// that no key or header (Kafka key, ce-subject, ce-time) gives them to the target.
	userID, anonymousID, timestamp bool
	// messageID: the event's id goes out pseudonymous (see id), still a stable idempotency key.
	messageID bool
}

func newFieldDropper(paths []string) fieldDropper {
	d := fieldDropper{}
	for _, p := range paths {
		d.paths = d.paths.add(strings.Split(p, "."))
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

// pathNode is a set of paths, by their first key: drop the member there, or go on into it.
type pathNode struct {
	drop     bool
	children map[string]*pathNode
}

// add returns n with path added (a new node when n is nil).
func (n *pathNode) add(path []string) *pathNode {
	if n == nil {
		n = &pathNode{}
	}
	if len(path) == 0 {
		n.drop = true
		return n
	}
	if n.children == nil {
		n.children = map[string]*pathNode{}
	}
	n.children[path[0]] = n.children[path[0]].add(path[1:])
	return n
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
	if d.paths != nil {
		out, changed, err := dropPaths(ev.Raw, d.paths)
		if err != nil {
			return ev, err
		}
		if changed {
			ev.Raw = out
		}
	}
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

// dropField removes the member at path (keys from the outside in); see dropPaths.
func dropField(obj []byte, path []string) ([]byte, bool, error) {
	return dropPaths(obj, (*pathNode)(nil).add(path))
}

// dropPaths removes the members at paths from a JSON object, in one pass over its bytes. Paths
// that do not exist, or cross a value that is not an object, leave it unchanged. Every occurrence
// of a duplicated key is removed, since consumers disagree on which one wins. It allocates
// nothing per member: only, once a member goes, the output (at most the input's length).
func dropPaths(obj []byte, paths *pathNode) ([]byte, bool, error) {
	dec := decoders.Get().(*jsontext.Decoder)
	defer decoders.Put(dec)
	dec.Reset(bytes.NewBuffer(obj), decoderOptions...)
	defer dec.Reset(bytes.NewBuffer(nil))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return obj, false, errNotObject
	}
	var out []byte  // nil until a member goes: then the members kept so far, and on
	keptEnd := 0    // the end of the last member kept while out is nil
	kept := 0       // members kept
	var name []byte // unquoted, when the key holds escapes
	for dec.PeekKind() != '}' {
		quoted, err := dec.ReadValue()
		if err != nil {
			return obj, false, err
		}
		start := int(dec.InputOffset()) - len(quoted)
		key := quoted[1 : len(quoted)-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			name, _ = jsontext.AppendUnquote(name[:0], quoted) // validated: at worst invalid UTF-8, replaced
			key = name
		}
		node := paths.children[string(key)] // no allocation: a map index by converted bytes
		var replacement []byte
		switch {
		case node != nil && !node.drop && dec.PeekKind() == '{':
			value, err := dec.ReadValue()
			if err != nil {
				return obj, false, err
			}
			end := int(dec.InputOffset())
			valueStart := end - len(value)
			inner, changed, err := dropPaths(obj[valueStart:end], node)
			if err != nil {
				return obj, false, err
			}
			if changed {
				replacement = append(obj[start:valueStart:valueStart], inner...) // cap is full: a copy
			} else {
				node = nil
			}
		default:
			if node != nil && !node.drop {
				node = nil // a path through a non-object: nothing to drop
			}
			if err := dec.SkipValue(); err != nil {
				return obj, false, err
			}
		}
		end := int(dec.InputOffset())
		switch node {
		case nil: // kept
			if out != nil {
				if kept > 0 {
					out = append(out, ',')
				}
				out = append(out, obj[start:end]...)
			} else {
				keptEnd = end
			}
			kept++
		default: // dropped or replaced
			if out == nil {
				out = make([]byte, 0, len(obj))
				if kept > 0 {
					out = append(out, obj[:keptEnd]...)
				} else {
					out = append(out, '{')
				}
			}
			if replacement != nil {
				if kept > 0 {
					out = append(out, ',')
				}
				out = append(out, replacement...)
				kept++
			}
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return obj, false, err
	}
	if out == nil {
		return obj, false, nil
	}
	return append(out, '}'), true, nil
}
