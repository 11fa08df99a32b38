// The server allocates a little on every request (HTTP buffers, the JSON
// body); mimalloc's thread-local free lists make that cheaper than glibc's
// malloc (callgrind: malloc and free were a fifth of a cached-token request).
// The library leaves the allocator to whoever embeds it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    warden::cli::main()
}
