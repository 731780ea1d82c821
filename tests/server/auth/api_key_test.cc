// API keys: format, parsing of bearer headers, hashing and comparison of
// secrets, cache salts.
#include "server/auth/api_key.h"

#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace conclave::server::auth {
namespace {

std::string AnyKey() {
  absl::StatusOr<ApiKey> key = GenerateApiKey();
  EXPECT_TRUE(key.ok()) << key.status();
  return FormatApiKey(*key);
}

TEST(ApiKeyTest, GeneratedKeysRoundTripThroughFormatAndParse) {
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<ApiKey> key = GenerateApiKey();
    ASSERT_TRUE(key.ok()) << key.status();
    EXPECT_TRUE(IsValidKeyId(key->id)) << key->id;
    EXPECT_EQ(key->secret.size(), kSecretLength);
    const std::string text = FormatApiKey(*key);
    EXPECT_EQ(text.size(), kApiKeyLength);
    EXPECT_EQ(text.substr(0, 4), "cnk_");
    absl::StatusOr<ApiKey> parsed = ParseApiKey(text);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->id, key->id);
    EXPECT_EQ(parsed->secret, key->secret);
    absl::StatusOr<ApiKey> bearer = ParseBearer("Bearer " + text);
    ASSERT_TRUE(bearer.ok()) << bearer.status();
    EXPECT_EQ(bearer->id, key->id);
    EXPECT_EQ(bearer->secret, key->secret);
  }
}

TEST(ApiKeyTest, GeneratedIdsAndSecretsAreDistinct) {
  std::set<std::string> ids, secrets;
  for (int i = 0; i < 1000; ++i) {
    absl::StatusOr<ApiKey> key = GenerateApiKey();
    ASSERT_TRUE(key.ok());
    EXPECT_TRUE(ids.insert(key->id).second) << key->id;
    EXPECT_TRUE(secrets.insert(key->secret).second);
  }
}

// 200 keys draw 8600 secret digits and 2400 id digits: a digit of the
// alphabets missing from them (probability < 1e-30 when uniform) means the
// encoding lost part of its entropy.
TEST(ApiKeyTest, KeysUseTheirWholeAlphabets) {
  std::set<char> id_chars, secret_chars;
  for (int i = 0; i < 200; ++i) {
    absl::StatusOr<ApiKey> key = GenerateApiKey();
    ASSERT_TRUE(key.ok());
    id_chars.insert(key->id.begin(), key->id.end());
    secret_chars.insert(key->secret.begin(), key->secret.end());
  }
  EXPECT_EQ(id_chars.size(), 32u);
  EXPECT_EQ(secret_chars.size(), 62u);
}

TEST(ApiKeyTest, BearerSchemeIsCaseInsensitiveAndSpacesAreIgnored) {
  const std::string key = AnyKey();
  for (const std::string& header :
       {"Bearer " + key, "bearer " + key, "BEARER\t" + key, "  Bearer   " + key + "  \r\n"}) {
    absl::StatusOr<ApiKey> parsed = ParseBearer(header);
    ASSERT_TRUE(parsed.ok()) << "\"" << header << "\": " << parsed.status();
    EXPECT_EQ(FormatApiKey(*parsed), key);
  }
}

TEST(ApiKeyTest, MalformedBearersAreUnauthenticatedAndNeverRepeatTheValue) {
  const std::string key = AnyKey();
  const std::string id = key.substr(4, 12);
  const std::string secret = key.substr(17);
  std::string upper_id = key;
  upper_id[5] = 'A';
  std::string digit_one_id = key;
  digit_one_id[5] = '1';
  std::string no_separator = key;
  no_separator[16] = '-';
  std::string dash_secret = key;
  dash_secret[30] = '-';
  const struct {
    std::string header;
    std::string says;
  } cases[] = {
      {"", "missing API key"},
      {"   ", "missing API key"},
      {"Bearer", "missing API key"},
      {"Bearer   ", "missing API key"},
      {key, "Bearer <key>"},                // the scheme forgotten
      {"Basic " + secret, "Bearer <key>"},  // another scheme
      {"Bearer" + key, "Bearer <key>"},     // no space after the scheme
      {"Bearer cnx_" + key.substr(4), "does not start with \"cnk_\""},
      {"Bearer " + key + "x", "characters"},
      {"Bearer " + key.substr(0, 50), "characters"},
      {"Bearer " + key + " " + secret, "characters"},
      {"Bearer " + upper_id, "base32"},
      {"Bearer " + digit_one_id, "base32"},
      {"Bearer " + no_separator, "followed by '_'"},
      {"Bearer " + dash_secret, "base62"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<ApiKey> parsed = ParseBearer(c.header);
    ASSERT_FALSE(parsed.ok()) << c.header;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kUnauthenticated) << c.header;
    const std::string message(parsed.status().message());
    EXPECT_NE(message.find(c.says), std::string::npos) << c.header << " -> " << message;
    EXPECT_EQ(message.find(secret.substr(0, 20)), std::string::npos) << message;
    EXPECT_EQ(message.find(id), std::string::npos) << message;
  }
}

TEST(ApiKeyTest, HashIsSha256OfSaltThenSecret) {
  // FIPS 180-2's test vector: SHA-256("abc").
  EXPECT_EQ(HexEncode(HashSecret("a", "bc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HashSecret("", "abc"), HashSecret("ab", "c"));
  EXPECT_EQ(HashSecret("salt", "secret").size(), kSecretHashBytes);
  EXPECT_NE(HashSecret("salt1", "secret"), HashSecret("salt2", "secret"));
}

TEST(ApiKeyTest, VerifySecretAcceptsOnlyTheSecretItsDigestWasMadeOf) {
  absl::StatusOr<std::string> salt = RandomBytes(kSaltBytes);
  ASSERT_TRUE(salt.ok());
  const std::string secret = AnyKey().substr(17);
  const std::string digest = HashSecret(*salt, secret);
  EXPECT_TRUE(VerifySecret(secret, *salt, digest));
  std::string other = secret;
  other[0] = other[0] == 'a' ? 'b' : 'a';
  EXPECT_FALSE(VerifySecret(other, *salt, digest));
  EXPECT_FALSE(VerifySecret(secret.substr(1), *salt, digest));
  EXPECT_FALSE(VerifySecret(secret, std::string(kSaltBytes, 'x'), digest));
  EXPECT_FALSE(VerifySecret(secret, *salt, digest.substr(0, 31)));
  EXPECT_FALSE(VerifySecret(secret, *salt, ""));
}

TEST(ApiKeyTest, ConstantTimeEqualsComparesEveryByteAndTheLength) {
  for (size_t n = 0; n <= 64; ++n) {
    std::string a(n, '\0');
    for (size_t i = 0; i < n; ++i) a[i] = static_cast<char>(i * 37 + 11);
    EXPECT_TRUE(ConstantTimeEquals(a, a)) << n;
    for (size_t i = 0; i < n; ++i) {
      std::string b = a;
      b[i] ^= 0x01;
      EXPECT_FALSE(ConstantTimeEquals(a, b)) << "length " << n << ", byte " << i;
    }
    EXPECT_FALSE(ConstantTimeEquals(a, a + "x")) << n;
  }
}

TEST(ApiKeyTest, CacheSaltIsStableAndDiffersPerKey) {
  // First 8 bytes of SHA-256("conclave-cache-salt" "abcdefghijkl") (Python's
  // hashlib). A change here moves every key's cached blocks.
  EXPECT_EQ(CacheSaltForKey("abcdefghijkl"), 0xad4f633d3fc5689eULL);
  std::set<uint64_t> salts;
  for (int i = 0; i < 200; ++i) {
    absl::StatusOr<ApiKey> key = GenerateApiKey();
    ASSERT_TRUE(key.ok());
    const uint64_t salt = CacheSaltForKey(key->id);
    EXPECT_EQ(salt, CacheSaltForKey(key->id));
    EXPECT_NE(salt, kOpenModeCacheSalt);
    salts.insert(salt);
  }
  EXPECT_EQ(salts.size(), 200u);
}

TEST(ApiKeyTest, HexRoundTripsAndRejectsBadDigits) {
  const std::string bytes("\x00\x01\x7f\x80\xff", 5);
  EXPECT_EQ(HexEncode(bytes), "00017f80ff");
  EXPECT_EQ(HexDecode("00017f80ff"), bytes);
  EXPECT_EQ(HexDecode("00017F80FF"), bytes);
  EXPECT_EQ(HexDecode(""), std::string());
  EXPECT_FALSE(HexDecode("abc").has_value());
  EXPECT_FALSE(HexDecode("zz").has_value());
  EXPECT_FALSE(HexDecode("0g").has_value());
}

}  // namespace
}  // namespace conclave::server::auth
