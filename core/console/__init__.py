"""Console sign-in sessions: an API key exchanged for a server-side session (cookie token, CSRF, idle timeout)."""
