// Package fdmap is the one way file descriptors from outside enter chsnap:
// descriptors named on the command line (inherited from the parent, as
// exec.Cmd.ExtraFiles passes them) and, in later work, descriptors received
// with SCM_RIGHTS on the API socket. It validates each descriptor, takes
// ownership of it, and closes each exactly once.
package fdmap
