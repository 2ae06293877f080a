"""Operations: logging, metrics and health reporting shared by every service."""
