package steps

import (
	"fmt"
	"slices"

	"gopkg.in/yaml.v3"
)

// retiredCommands are the commands of the former multi-command types.
var retiredCommands = map[string][]string{
	"restic": {"init", "backup", "forget", "check", "snapshots", "restore"},
	"rclone": {"sync", "copy", "check", "lsf", "size"},
}

// retiredCommandType is the migration hint of the former multi-command
// types restic and rclone: each command is now a type of its own
// (restic with command: backup → restic-backup) whose params are exactly
// that command's, so the schema and validate reject the others.
func retiredCommandType(old string) func(with *yaml.Node) string {
	return func(with *yaml.Node) string {
		cmd := ""
		if with != nil && with.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(with.Content); i += 2 {
				if with.Content[i].Value == "command" {
					cmd = with.Content[i+1].Value
				}
			}
		}
		if !slices.Contains(retiredCommands[old], cmd) {
			return fmt.Sprintf("use type: %s-<command> (one type per command: %s-%s) and drop \"command\"",
				old, old, retiredCommands[old][0])
		}
		return fmt.Sprintf("use type: %s-%s (one type per command) and drop \"command\"", old, cmd)
	}
}
