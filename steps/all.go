// Package steps holds the built-in step types, one file per type.
package steps

import "github.com/planrun/planrun/engine"

// All returns the registry of every built-in step type: the one list.
func All() *engine.Registry {
	r := engine.NewRegistry(
		Exec.Type(),
		// files and artifacts
		Tar.Type(),
		Untar.Type(),
		Encrypt.Type(),
		Decrypt.Type(),
		Compress.Type(),
		Decompress.Type(),
		Verify.Type(),
		Prune.Type(),
		DiskCheck.Type(),
		DiskUsage.Type(),
		Manifest.Type(),
		// databases and services
		PgDump.Type(),
		PgRestore.Type(),
		PgBasebackup.Type(),
		PitrRestore.Type(),
		WALVerify.Type(),
		WALExpire.Type(),
		Mongodump.Type(),
		Mongorestore.Type(),
		QdrantSnapshot.Type(),
		QdrantRestore.Type(),
		HTTPGet.Type(),
		HTTPPost.Type(),
		// off-site and monitoring
		ResticInit.Type(),
		ResticBackup.Type(),
		ResticForget.Type(),
		ResticCheck.Type(),
		ResticSnapshots.Type(),
		ResticRestore.Type(),
		ResticDump.Type(),
		ResticUnlock.Type(),
		ResticCopy.Type(),
		RcloneSync.Type(),
		RcloneCopy.Type(),
		RcloneCheck.Type(),
		RcloneLsf.Type(),
		RcloneSize.Type(),
		RcloneDelete.Type(),
		HealthcheckPing.Type(),
		Webhook.Type(),
	)
	r.Retire("restic", retiredCommandType("restic"))
	r.Retire("rclone", retiredCommandType("rclone"))
	return r
}
