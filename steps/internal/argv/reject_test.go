package argv

import "testing"

func TestReject(t *testing.T) {
	bad := []string{"-f", "--file", "-W", "--password"}
	for arg, refused := range map[string]bool{
		"--file=x": true, "--file": true, "--fil=x": true, // getopt_long takes abbreviations
		"-fx": true, "-f": true, "--passw": true, "--f": true,
		"--no-owner": false, "--filter=x": false, "-Z9": false,
	} {
		err := Reject("extra_args", []string{"--verbose", arg}, bad...)
		if (err != nil) != refused {
			t.Errorf("%q: err = %v, want refused %v", arg, err, refused)
		}
	}
}
