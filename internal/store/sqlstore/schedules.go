package sqlstore

import "github.com/nexixai/agentos/internal/store"

// EncodeScheduleAuth encodes a schedule's creator scopes and roles.
func EncodeScheduleAuth(s store.Schedule) (scopes, roles string, err error) {
	scopes, err = ToJSON("scopes", nonNil(s.Scopes))
	if err != nil {
		return "", "", err
	}
	roles, err = ToJSON("roles", nonNil(s.Roles))
	return scopes, roles, err
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

// PageSchedules cuts a page read with limit+1 rows and returns the
// cursor of the next page ("" when none).
func PageSchedules(ss []store.Schedule, limit int) ([]store.Schedule, string) {
	if len(ss) <= limit {
		return ss, ""
	}
	ss = ss[:limit]
	return ss, ss[limit-1].ScheduleID
}
