-- Statistics at the target the previous migration set.
ANALYZE profiles;
