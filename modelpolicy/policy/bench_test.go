package policy

import (
	"strings"
	"testing"
)

// prompt2KB is a realistic 2 KB prompt: prose with a few numbers, dates,
// versions and one e-mail address, phone number and card number.
var prompt2KB = func() string {
	para := "Hello team, please review the release notes for version 2.14.3 shipped on 2024-03-18 at 10:30. " +
		"Order 55123 was delayed; the invoice INV-2024-000871 totals $1,249.99 and tracking 1Z999AA10123456784 is attached. " +
		"Contact jane.doe@example.com or call +1 (415) 555-0100; the card on file is 4111 1111 1111 1111. " +
		"We meet at 5 in room 301, see the dot com era write-up, and the build at 10.0.0.1 passed 42 of 43 checks. "
	var b strings.Builder
	for b.Len() < 2048 {
		b.WriteString(para)
	}
	return b.String()[:2048]
}()

// prompt2KBUnicode is the same prompt in non-ASCII clothing (accents,
// curly quotes, an em dash), which takes the normalisation path.
var prompt2KBUnicode = strings.NewReplacer("Hello", "Grüß Gott", "please", "«please»", "; ", " — ").Replace(prompt2KB)[:2048]

func BenchmarkScan2KBUnicode(b *testing.B) {
	b.SetBytes(int64(len(prompt2KBUnicode)))
	b.ReportAllocs()
	for b.Loop() {
		Scan(prompt2KBUnicode)
	}
}

func BenchmarkScan2KB(b *testing.B) {
	b.SetBytes(int64(len(prompt2KB)))
	b.ReportAllocs()
	for b.Loop() {
		Scan(prompt2KB)
	}
}
