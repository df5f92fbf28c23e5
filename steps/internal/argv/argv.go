// Package argv builds command lines for the CLI tools the steps drive.
package argv

// AppendEach appends flag and value for every value: repeated flags
// (--tag a --tag b, --exclude x --exclude y).
func AppendEach(args []string, flag string, vals []string) []string {
	for _, v := range vals {
		args = append(args, flag, v)
	}
	return args
}

// Operands appends operands after "--" when one of them starts with "-",
// so a path like "-odd" is never read as a flag.
func Operands(args []string, operands ...string) []string {
	for _, o := range operands {
		if len(o) > 0 && o[0] == '-' {
			args = append(args, "--")
			break
		}
	}
	return append(args, operands...)
}
