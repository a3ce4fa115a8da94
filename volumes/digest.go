package volumes

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

func digestOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(h[:])
}

// commitConfig adds a layer and a history entry to an image config.
func commitConfig(cfg []byte, diffID, container string) []byte {
	var c map[string]any
	if json.Unmarshal(cfg, &c) != nil || c == nil {
		c = map[string]any{}
	}
	rootfs, _ := c["rootfs"].(map[string]any)
	if rootfs == nil {
		rootfs = map[string]any{"type": "layers"}
	}
	ids, _ := rootfs["diff_ids"].([]any)
	rootfs["diff_ids"] = append(ids, diffID)
	c["rootfs"] = rootfs
	hist, _ := c["history"].([]any)
	c["history"] = append(hist, map[string]any{
		"created": time.Now().UTC().Format(time.RFC3339Nano), "created_by": "thinctl container commit " + container,
	})
	c["created"] = time.Now().UTC().Format(time.RFC3339Nano)
	b, _ := json.Marshal(c)
	return b
}
