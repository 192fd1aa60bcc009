# Hangar's own secrets, generated once and kept in the Terraform state (treat the state as
# secret: it also holds the database password and the Redis token).

# The platform admin token.
resource "random_password" "admin_token" {
  length  = 40
  special = false
}

# The master key that encrypts environments' secrets: 32 random bytes, standard base64
# (44 characters ending in "="). Losing it loses the environments' secrets.
resource "random_bytes" "master_key" {
  length = 32
}
