package sqlstore

import (
	"errors"

	"github.com/nexixai/agentos/internal/errs"
)

// MapError turns err into an errs error. It maps what every driver shares
// (nil, an error already mapped, noRows, the driver's "no rows" sentinel,
// and the context's deadline and cancellation, mapped once by errs.FromContext) and hands anything else to
// native, the adapter's mapping of its driver's own errors. what names the
// object for messages.
func MapError(err error, what string, noRows error, native func(err error, what string) error) error {
	if err == nil {
		return nil
	}
	var e *errs.Error
	if errors.As(err, &e) {
		return err
	}
	if errors.Is(err, noRows) {
		return errs.E(errs.NotFound, "%s not found", what)
	}
	if e := errs.FromContext(err, "store operation"); e != nil {
		return e
	}
	return native(err, what)
}
