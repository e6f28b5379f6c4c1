#pragma once
// The host's shared scratch directories, hidden from the agent. Landlock confines which files
// the agent may open, but not which path-named unix sockets it may connect to (no Landlock ABI up
// to 7 covers connect), and the places those sockets live — /tmp (X11, ssh-agent, tmux), /run
// (D-Bus, systemd, container engines), /dev/shm — are shared by every user of the host. So, in the
// agent's own mount namespace, each of them is covered by a fresh tmpfs; the policy's paths that
// lie beneath one (a read_write dir under /tmp, the trust bundle) are bind-mounted back in.
#include <string>
#include <vector>

namespace bulwark::supervisor {

// The directories covered, when they exist as real directories (not symlinks).
const std::vector<std::string>& shared_dirs();

// Covers each shared dir with an empty tmpfs, then binds back every path of keep that lies strictly
// beneath it. Must run in a private mount namespace while /proc still shows this process (before
// the agent's own procfs is mounted). Throws bulwark::Error naming the directory and errno.
void hide_shared_dirs(const std::vector<std::string>& keep);

}  // namespace bulwark::supervisor
