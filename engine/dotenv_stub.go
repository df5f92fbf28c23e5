package engine

// TEMPORARY stub until the store branch (engine/dotenv.go) is merged.

// EnvVar is one KEY=VALUE from an env file.
type EnvVar struct {
	Key, Value string
	Line       int
}

// LoadEnvFile is stubbed.
func LoadEnvFile(path string, allowLoosePerms bool) ([]EnvVar, []string, error) {
	return nil, nil, nil
}
